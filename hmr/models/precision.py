"""Network precision: float32, or the backbone in bfloat16 where the device computes it natively.

A predictor's ``precision`` attribute (``"fp32"`` unless the pipeline sets it) chooses how its backbone runs:
``"bf16"`` autocasts the backbone's matrix products and convolutions to bfloat16 (on CPUs with AVX512-BF16
or AMX about 3x faster than float32 for ViT-H, docs/benchmarks.md "precision"), while the heads, which
regress the parameters in small iterative steps, and the body model stay float32. ``auto`` takes bf16 where
the device has it natively and float32 elsewhere.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CUDA with bf16; CPU with AVX512-BF16 or AMX, which
    oneDNN uses). Elsewhere bf16 is emulated and slower than float32."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type == "cpu":
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``fp32`` or ``bf16`` for ``precision`` (one of :data:`PRECISIONS`) on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def backbone_autocast(model, x: torch.Tensor):
    """The context ``model``'s backbone runs ``x`` in: bf16 autocast when ``model.precision == "bf16"``, else
    none (training's own mixed precision, set by Lightning, is left as it is)."""
    if getattr(model, "precision", "fp32") != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, dtype=torch.bfloat16)
