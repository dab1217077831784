"""Adam with a cosine-decayed learning rate, written out: ``torch.optim``'s first step imports ``torch._dynamo``,
~1.5 s once per process, which a video's first warm frame or a one-off fit would pay."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def adam(params: list[torch.Tensor], lrs: list[float], loss: Callable[[], torch.Tensor], iterations: int,
         betas: tuple[float, float], final_fraction: float, constrain: Callable[[], None]) -> None:  # fmt: skip
    """Minimise ``loss()`` over ``params`` in place for ``iterations`` steps, learning rates ``lrs`` (one per
    tensor) decaying to ``final_fraction`` of themselves; ``constrain()`` runs after every step."""
    b1, b2 = betas
    m = [torch.zeros_like(x) for x in params]
    v = [torch.zeros_like(x) for x in params]
    for x in params:
        x.requires_grad_(True)
    for it in range(iterations):
        decay = final_fraction + (1 - final_fraction) / 2 * (1 + math.cos(math.pi * it / iterations))
        grads = torch.autograd.grad(loss(), params)
        with torch.no_grad():
            for x, g, m_, v_, lr in zip(params, grads, m, v, lrs, strict=True):
                m_.mul_(b1).add_(g, alpha=1 - b1)
                v_.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v_ / (1 - b2 ** (it + 1))).sqrt_().add_(1e-8)
                x.addcdiv_(m_, denom, value=-lr * decay / (1 - b1 ** (it + 1)))
            constrain()
    for x in params:
        x.requires_grad_(False)
