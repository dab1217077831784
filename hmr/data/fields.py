"""4D-Humans' per-person fields -> :class:`Annotation`, with the checks and filters its loaders apply.

The training tars' ``data.pyd`` dicts and the rows of HMR 2.0's evaluation npz files carry the same fields
(hmr2-facts.md §5): ``keypoints_2d`` (44, 3) pixels + confidence, ``keypoints_3d`` (44, 4) metres +
confidence, ``center`` (2,), ``scale`` (w, h) or a side, ``body_pose`` (72,) axis-angle whose first 3 are the
global orientation, ``betas`` (10,), ``has_body_pose``, ``has_betas``. Our synthetic sets add
``focal_length``, ``principal_point`` (2,) pixels (their true camera).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hmr.data.errors import BadSample
from hmr.data.sample import NUM_BETAS, NUM_KEYPOINTS, Annotation


@dataclass
class FilterConfig:
    """4D-Humans' ``low1`` training filters (Project_HMR hard-codes the same values)."""

    enabled: bool = True  # off for evaluation sets
    min_confidence: float = 0.3  # 2D keypoints below this confidence count as missing (set to 0)
    min_visible: int = 5  # keep a person only with at least this many 2D keypoints left
    max_fitting_loss: float = 31000.0  # drop pseudo-ground-truth whose fit's reprojection loss is this or more
    max_abs_beta: float = 3.0  # betas beyond this are not trusted (has_betas = 0, then has_body_pose = 0)
    betas_regularization: bool = True  # no betas -> betas = 0 with has_betas = 1 (BETAS_REG: pull to the mean)


def array(d: dict, key: str, shape: tuple[int, ...], where: str, default=None) -> np.ndarray:
    """``d[key]`` as a finite float32 array of ``shape`` (``default`` when absent and one is given). Leading
    length-1 axes are dropped (``(1, 44, 3)``, SMPLer's nested joints) and a 1-D field may come in any layout of
    its size; any other shape is refused rather than reshaped (which would scramble the values)."""
    if key not in d or d[key] is None:
        if default is None:
            raise BadSample("missing_key", f"{where}: no {key!r}")
        return np.asarray(default, np.float32)
    try:
        a = np.asarray(d[key], dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError) as err:
        raise BadSample("bad_value", f"{where}: {key!r} is not numeric ({err})") from None
    while a.ndim > len(shape) and a.shape[0] == 1:
        a = a[0]
    if len(shape) == 1 and a.size == shape[0]:
        a = a.reshape(shape)
    if a.shape != shape:
        raise BadSample("bad_value", f"{where}: {key!r} has shape {a.shape}, expected {shape}")
    with np.errstate(over="ignore"):
        a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):  # after the cast: 1e308 is a finite float64 but Inf in float32
        raise BadSample("non_finite", f"{where}: {key!r} holds NaN or Inf (in float32)")
    return a


def _flag(d: dict, key: str, where: str) -> float:
    return float(array(d, key, (), where, 0.0) > 0) if key in d else 0.0


def person_annotation(d: dict, where: str, dataset: str, key: str) -> Annotation:
    """A person dict in 4D-Humans' layout -> Annotation (raises BadSample on a missing or bad field)."""
    if not isinstance(d, dict):
        raise BadSample("bad_value", f"{where}: a person entry is a {type(d).__name__}, not a dict")
    kp2d = array(d, "keypoints_2d", (NUM_KEYPOINTS, 3), where)
    kp3d = array(d, "keypoints_3d", (NUM_KEYPOINTS, 4), where, np.zeros((NUM_KEYPOINTS, 4)))
    center = array(d, "center", (2,), where)
    scale = np.asarray(d.get("scale", np.nan), np.float32).reshape(-1)
    if scale.size not in (1, 2) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise BadSample("bad_value", f"{where}: 'scale' must be 1 or 2 positive numbers, got {scale.tolist()}")
    has_pose = _flag(d, "has_body_pose", where)
    pose = array(d, "body_pose", (72,), where, np.zeros(72))
    focal = array(d, "focal_length", (2,), where) if "focal_length" in d else None
    principal = array(d, "principal_point", (2,), where) if "principal_point" in d else None
    return Annotation(
        keypoints_2d=kp2d, keypoints_3d=kp3d, center=center, size=np.broadcast_to(scale * 200.0, (2,)).copy(),
        global_orient=pose[:3].copy(), body_pose=pose[3:].copy(),
        betas=array(d, "betas", (NUM_BETAS,), where, np.zeros(NUM_BETAS)),
        has_global_orient=has_pose, has_body_pose=has_pose, has_betas=_flag(d, "has_betas", where),
        focal_length=focal, principal_point=principal if focal is not None else None, dataset=dataset, key=key,
    )  # fmt: skip


def fitting_loss(d: dict) -> float | None:
    """The pseudo-ground-truth fit's reprojection loss from ``extra_info`` (stored as ``np.array(dict)``)."""
    info = d.get("extra_info")
    if not isinstance(info, dict):
        return None
    loss = info.get("fitting_loss")
    if isinstance(loss, np.ndarray) and loss.dtype == object and loss.shape == ():
        loss = loss.item()
    if isinstance(loss, dict):
        loss = loss.get("reprojection_loss")
    try:
        return float(np.asarray(loss).reshape(-1)[0]) if loss is not None else None
    except (TypeError, ValueError, IndexError):
        return None


def apply_filters(ann: Annotation, cfg: FilterConfig, loss: float | None = None) -> Annotation:
    """4D-Humans' training filters, in its order (raises BadSample('filtered') for a dropped person)."""
    if not cfg.enabled:
        return ann
    kp = ann.keypoints_2d
    kp[kp[:, 2] < cfg.min_confidence, 2] = 0.0
    visible = int((kp[:, 2] > 0).sum())
    if visible < cfg.min_visible:
        raise BadSample("filtered", f"{ann.key}: {visible} visible keypoints (< {cfg.min_visible})")
    if loss is not None and loss >= cfg.max_fitting_loss:
        raise BadSample("filtered", f"{ann.key}: fitting loss {loss:.0f} >= {cfg.max_fitting_loss:.0f}")
    if np.any(np.abs(ann.betas) > cfg.max_abs_beta):
        ann.has_betas = 0.0
    both = float(ann.has_betas > 0 and ann.has_body_pose > 0)
    ann.has_betas = ann.has_body_pose = ann.has_global_orient = both
    if cfg.betas_regularization and not ann.has_betas:
        ann.betas = np.zeros_like(ann.betas)
        ann.has_betas = 1.0
    return ann
