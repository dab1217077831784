"""The silhouette term: the fitted body against a person mask (e.g. BlazePose's segmentation).

Two one-sided parts, both in units of the person's 2D size and robust (Geman-McClure), so that clothing,
hair, a held object or a second person in the mask cost a bounded amount:

* **inside**: points spread over the body surface (``OUTLINE_POINTS``, farthest-point sampled at rest) must
  project inside the mask: each costs its distance to the mask (a distance transform on a ``GRID`` x ``GRID``
  raster of the person's region). Clothing only makes a mask larger than the body, so this part pulls a too
  wide body in without pushing a slim one out. Points outside the image cost nothing (no evidence there).
* **cover**: mask pixels near the person (within ``NEAR`` of a used keypoint) must lie within ``margin`` of a
  projected surface point: it keeps the body from shrinking away from the mask, and the margin leaves room for
  clothes.

:func:`torso_cut_at_bottom` tells from the mask a person whose torso the image's bottom border cuts.
"""

from __future__ import annotations

import dataclasses
import weakref

import cv2
import numpy as np
import torch

from hmr.body import BodyModel

GRID = 96  # raster cells along the side of a person's region
OUTLINE_POINTS = 400  # body surface points the inside part checks (about 6 cm apart on an adult)
COVER_SAMPLES = 200  # mask pixels the cover part checks per person
NEAR = 0.3  # mask pixels farther than this (person sizes) from every used keypoint are not the person's
CUT_RUN = 0.8  # a mask run along the bottom border this many torso widths long is a cut torso
_REGION_PAD = 2.0  # the raster spans twice the person, so a misplaced limb still sees the way back


@dataclasses.dataclass
class Silhouette:
    """Mask targets of N people: ``dist`` (N, 1, G, G) each cell's distance to the mask (person sizes; 0 inside
    it and outside the image), the raster's top-left corner ``origin`` (N, 2) and cell size ``cell`` (N,) in
    pixels, mask samples ``points`` (N, M, 2) pixels with ``weights`` (N, M) (0: padding)."""

    dist: torch.Tensor
    origin: torch.Tensor
    cell: torch.Tensor
    points: torch.Tensor
    weights: torch.Tensor

    def map(self, fn) -> Silhouette:
        return Silhouette(*(fn(getattr(self, f.name)) for f in dataclasses.fields(self)))

    def distance(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, K) distance to the mask (person sizes) of points ``pixels`` (N, K, 2); beyond the raster, its
        border's."""
        grid = (pixels - self.origin[:, None]) / (self.cell[:, None, None] * GRID) * 2 - 1
        return torch.nn.functional.grid_sample(self.dist, grid[:, None], align_corners=False,
                                               padding_mode="border")[:, 0, 0]  # fmt: skip


def person_masks(masks, n: int) -> np.ndarray:
    """``masks`` (numpy or torch) as an (n, H, W) numpy array, one mask per person; a ValueError otherwise."""
    masks = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if masks.ndim != 3 or masks.shape[0] != n:
        raise ValueError(f"masks has shape {masks.shape}; expected ({n}, H, W), one mask per person")
    return masks


def silhouette_targets(masks: np.ndarray, kp2d: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor) -> Silhouette:
    """Rasters of ``masks`` (N, H, W) in [0, 1] (:func:`person_masks`; the camera's image) around each person's
    used keypoints ``kp2d`` (N, K, 2) pixels (``valid`` (N, K)), whose 2D sizes are ``scale`` (N,) pixels."""
    n = kp2d.shape[0]
    kp = kp2d.detach().cpu().double().numpy()
    ok = valid.detach().cpu().numpy()
    sizes = scale.detach().cpu().double().numpy()
    dist = np.zeros((n, 1, GRID, GRID), np.float32)
    origin = np.zeros((n, 2), np.float32)
    cell = np.ones(n, np.float32)
    points = np.zeros((n, COVER_SAMPLES, 2), np.float32)
    weights = np.zeros((n, COVER_SAMPLES), np.float32)
    for i in range(n):
        mask = np.asarray(masks[i], np.float32)
        inside_px = mask >= 0.5
        pts = kp[i][ok[i]]
        if not inside_px.any() or len(pts) == 0:
            continue
        ys, xs = np.nonzero(inside_px)
        lo = np.minimum(pts.min(0), [xs.min(), ys.min()])
        hi = np.maximum(pts.max(0), [xs.max() + 1, ys.max() + 1])
        side = float((hi - lo).max()) * _REGION_PAD
        origin[i] = (lo + hi) / 2 - side / 2
        cell[i] = side / GRID
        warp = np.array([[1 / cell[i], 0, -origin[i, 0] / cell[i]], [0, 1 / cell[i], -origin[i, 1] / cell[i]]])
        raster = cv2.warpAffine(mask, warp, (GRID, GRID), flags=cv2.INTER_AREA if cell[i] > 1 else cv2.INTER_LINEAR)
        known = cv2.warpAffine(np.ones_like(mask), warp, (GRID, GRID), borderValue=0.0) > 0.5
        inside = (raster >= 0.5) & known
        if not inside.any():
            continue
        d = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 5) * cell[i] / sizes[i]
        dist[i, 0] = np.where(known, d, 0.0)
        centres = origin[i] + (np.stack(np.nonzero(inside)[::-1], -1) + 0.5) * cell[i]
        near = np.linalg.norm(centres[:, None] - pts[None], axis=-1).min(1) < NEAR * sizes[i]
        centres = centres[near]
        if len(centres) > COVER_SAMPLES:
            centres = centres[np.linspace(0, len(centres) - 1, COVER_SAMPLES).round().astype(int)]
        points[i, : len(centres)] = centres
        weights[i, : len(centres)] = 1.0
    dev, dt = kp2d.device, kp2d.dtype
    return Silhouette(*(torch.as_tensor(a, device=dev, dtype=dt) for a in (dist, origin, cell, points, weights)))


def silhouette_cost(proj: torch.Tensor, s: Silhouette, scale: torch.Tensor, robust, margin: float,
                    cover: float) -> torch.Tensor:  # fmt: skip
    """(N,) cost of surface points projected to ``proj`` (N, V, 2) pixels: mean inside part plus ``cover`` x the
    mean cover part; ``robust`` maps squared distances (person sizes; cover distances beyond ``margin``) to
    costs."""
    # a raster cell of slack: bilinear distances put points on the mask's edge up to a cell outside it
    slack = s.cell[:, None] / scale[:, None]
    inside = robust(torch.relu(s.distance(proj) - slack).pow(2)).mean(-1)
    # each mask sample's nearest surface point, chosen without autograd: the distance's gradient is that pair's,
    # and differentiating the whole (M, V) distance matrix cost more than the rest of the step's silhouette.
    # |q|^2 - 2 p.q orders the points q as |p - q| does; min(-1).indices is faster than argmin on CPU.
    with torch.no_grad():
        nearest = torch.baddbmm(proj.pow(2).sum(-1)[:, None], s.points, proj.transpose(1, 2), alpha=-2)
        nearest = nearest.min(-1).indices
    closest = proj.gather(1, nearest[..., None].expand(-1, -1, 2))
    gap = (s.points - closest).norm(dim=-1) / scale[:, None]
    far = robust(torch.relu(gap - margin).pow(2))
    return inside + cover * (far * s.weights).sum(-1) / s.weights.sum(-1).clamp_min(1.0)


_OUTLINE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def outline_set(body_model: BodyModel, num: int = OUTLINE_POINTS) -> np.ndarray:
    """Indices of ``num`` vertices spread over the body surface (farthest-point sampling of the rest template
    from the vertex nearest the mean; cached per model)."""
    per_model = _OUTLINE_CACHE.setdefault(body_model, {})
    if num not in per_model:
        v = body_model.v_template.detach().double().cpu().numpy()
        num = min(num, len(v))
        picked = [int(np.argmin(np.linalg.norm(v - v.mean(0), axis=1)))]
        gap = np.linalg.norm(v - v[picked[0]], axis=1)
        for _ in range(num - 1):
            picked.append(int(np.argmax(gap)))
            gap = np.minimum(gap, np.linalg.norm(v - v[picked[-1]], axis=1))
        per_model[num] = np.asarray(picked, np.int64)
    return per_model[num]


def near_mask(masks: np.ndarray, pixels: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """(N, K) bool: the mask (>= 0.5; ``masks`` (N, H, W)) reaches within ``radius`` (N,) pixels (a square
    window) of each point ``pixels`` (N, K, 2); points outside the image count as near (no evidence against
    them)."""
    pts = pixels.detach().cpu().double().numpy()
    rad = radius.detach().cpu().double().numpy()
    out = np.ones(pts.shape[:2], dtype=bool)
    for i, mask in enumerate(masks):
        h, w = mask.shape
        r = max(int(np.ceil(rad[i])), 0)
        for k, (x, y) in enumerate(pts[i]):
            xi, yi = int(np.floor(x)), int(np.floor(y))
            if 0 <= xi < w and 0 <= yi < h:
                window = mask[max(yi - r, 0) : yi + r + 1, max(xi - r, 0) : xi + r + 1]
                out[i, k] = bool((window >= 0.5).any())
    return torch.as_tensor(out, device=pixels.device)


def torso_cut_at_bottom(masks: np.ndarray, torso_width: torch.Tensor, run: float = CUT_RUN) -> torch.Tensor:
    """(N,) bool: the image's bottom row crosses person i's mask (``masks`` (N, H, W)) in one run at least ``run``
    times their 2D torso width ``torso_width`` (N,) pixels long, i.e. the border cuts their torso (feet or legs
    at the border make short runs). The legs a detector then shows inside the picture are invented."""
    width = torso_width.detach().cpu().numpy()
    out = np.zeros(len(masks), dtype=bool)
    for i, mask in enumerate(masks):
        row = np.concatenate([[0], np.asarray(mask[-1]) >= 0.5, [0]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(row))
        longest = (edges[1::2] - edges[::2]).max(initial=0)
        out[i] = width[i] > 0 and longest >= run * width[i]
    return torch.as_tensor(out, device=torso_width.device)
