"""Landmark definitions calibrated to the landmark detector (docs/body_model_format.md, "Calibrated landmark
definitions").

The pipeline fits the body model to BlazePose's 33 landmarks, so a model's ``blazepose33`` keypoint set should
be the point of the body where BlazePose puts each landmark. A geometric definition (a COCO vertex regressor, a
kinematic joint) misses it by a few percent of the body's height in a consistent direction, and a fit then
bends the shape to absorb the offset. :func:`calibrate_landmarks` measures where BlazePose actually puts them:

1. **Renders.** The body model alone, one person 60-90% of the image height, in poses from
   :func:`hmr.data.people.sample_pose` (standing, walking, reaching, sitting), shapes from
   :func:`~hmr.data.people.sample_betas`, three quarters facing the camera within +-60 deg of yaw and the rest
   seen from the side or back, clothed, lit and set over backgrounds as the synthetic generator does
   (:mod:`hmr.data.synth`). View ``i`` is drawn from its own RNG seeded with ``(seed, i)``.
2. **Detections.** BlazePose (``PoseEstimator.from_roi``) on the region ``box_to_roi`` makes from the true
   person box; landmarks with visibility >= :data:`MIN_VISIBILITY` inside the image are kept.
3. **Fit.** Each landmark becomes a convex combination of posed points (non-negative weights summing to 1)
   over candidates near its current definition: the vertices within a few centimetres of its rest-pose
   location and the nearest joints (landmarks such as hips and shoulders lie inside the body, which joints
   and front-and-back vertex pairs reach). The weights minimise, over all renders, the image distance between
   the combination's projection and the detection, with the projection multiplied out so that the problem
   stays linear: ``u = f x / z + c`` becomes ``f x + (c - u) z = 0`` with ``x, z`` linear in the weights
   (divided by the point's depth and the person's height, each residual is the pixel error in heights),
   plus a weak pull of the rest-pose location towards the starting one (:data:`PRIOR_OBSERVATIONS`) and a
   tiny ridge (:data:`RIDGE`). Non-negative least squares with a heavily weighted row of ones (the sum-to-one
   constraint) gives sparse weights; a second pass drops detections more than 3x the landmark's median error
   away (BlazePose's own mistakes, e.g. left and right swapped on a back view); weights under
   :data:`MIN_WEIGHT` are pruned and the smallest dropped until at most :data:`MAX_ENTRIES` entries remain,
   refitting after each step, and the result is renormalised.
4. **Symmetry.** The mirror image of a vertex is the vertex nearest its rest-pose reflection ``x -> -x``
   (about the template's centre), of a joint its left/right namesake. A left landmark and its right partner
   are fitted together with one set of weights, the right one on the mirrored columns; a midline landmark
   (the nose) gives each vertex and its mirror the same weight.
5. **Report.** Every :data:`HOLDOUT_EVERY`-th render is held out; :class:`CalibrationReport` gives the mean and
   median 2D distance there between BlazePose and the model's landmarks (pixels, and percent of the person's
   box height) for the starting and the calibrated definition, overall and per landmark.

A model that does not define ``blazepose33`` (SMPL, another topology) starts from the bundled default
model's geometric definition carried over by the joints (:func:`starting_definition`,
:func:`transfer_definition`). Deterministic for a seed on one machine (Mesa's and BlazePose's CPU paths).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from hmr.body import SMPL_JOINT_NAMES, BodyModel, KeypointSet
from hmr.body.keypoints import BLAZEPOSE33_NAMES
from hmr.body.model import keypoint_set_arrays
from hmr.data.people import sample_betas, sample_pose
from hmr.data.synth import SynthGenerator, _rot, procedural_background
from hmr.geometry import Camera, matrix_to_axis_angle

SET_NAME = "blazepose33"
CALIBRATION_VERSION = 1
MIN_VISIBILITY = 0.8  # BlazePose visibility a detection needs to be used
MAX_ENTRIES = 16  # entries per landmark
MIN_WEIGHT = 0.005  # smaller weights are pruned
HOLDOUT_EVERY = 5  # every 5th render is held out for the report (20%)
MIN_OBSERVATIONS = 8  # a landmark (pair) seen fewer times in the fit renders keeps its starting definition
OUTLIER_FACTOR = 3.0  # second pass: drop detections farther than this times the median error
OUTLIER_FLOOR = 0.01  # ... but never closer than this (fraction of the person's height)
GROSS_ERROR = 0.15  # first pass: drop detections this far (fraction of height) from the starting definition
RIDGE = 1e-6  # per residual row: a small pull towards spread weights where the renders do not decide
PRIOR_OBSERVATIONS = 10.0  # the starting rest-pose location counts as this many detections (matters on few renders)
# The default body model file keeps the geometric definition its calibration started from under this (unlisted) set
# name, kp_blazepose33_geometric_* (tools/calibrate_default_body.py); other models' calibration starts from it too.
GEOMETRIC_SET = f"{SET_NAME}_geometric"
IMAGE_SIZES = ((512, 512), (640, 480), (480, 640))
POSE_MIX = {"standing": 0.35, "walking": 0.35, "reaching": 0.2, "sitting": 0.1}
FRONT_SHARE = 0.75  # share of views within +-FRONT_YAW_DEG of facing the camera; the rest are side/back views
FRONT_YAW_DEG = 60.0
FILL = (0.6, 0.9)  # person's box height as a share of the image height
# Candidate vertices per landmark kind: those within (distance of the nearest vertex + radius) of the rest-pose
# location, at most this many nearest; plus the nearest joints within _JOINT_RADIUS.
_NEIGHBOURHOOD = {"face": (0.02, 64), "hand": (0.03, 64), "body": (0.06, 200)}
_CANDIDATE_JOINTS = 3
_JOINT_RADIUS = 0.15  # metres: joints farther from the landmark are no candidates (they would not follow it)


# ------------------------------------------------------------------------------------------------ records
@dataclass
class Views:
    """Posed people seen by pinhole cameras, and where a detector put their landmarks.

    cols (C,): columns of ``[joints; vertices]`` kept; points (N, C, 3) their camera-frame positions (metres);
    focal (N,), principal_point (N, 2), image_size (N, 2) W, H pixels; height_px (N,) the person's box height;
    landmarks (N, K, 2) detected pixels; visible (N, K) detection usable; detected (N,) the detector found a body;
    held_out (N,) view kept out of the fit, for the report.
    """

    cols: np.ndarray
    points: np.ndarray
    focal: np.ndarray
    principal_point: np.ndarray
    image_size: np.ndarray
    height_px: np.ndarray
    landmarks: np.ndarray
    visible: np.ndarray
    detected: np.ndarray
    held_out: np.ndarray

    def __len__(self) -> int:
        return len(self.focal)


@dataclass
class LandmarkError:
    """Held-out 2D error of one landmark (or all, ``name="all"``): ``count`` detections; mean and median
    distance in pixels and in percent of the person's box height, and the systematic part (the median offset),
    for the starting ("before") and the calibrated ("after") definition."""

    name: str
    count: int
    before_mean_pct: float
    before_median_pct: float
    after_mean_pct: float
    after_median_pct: float
    before_mean_px: float
    before_median_px: float
    after_mean_px: float
    after_median_px: float
    before_bias_pct: float  # length of the median offset (model minus detection, image x and y), % of height
    after_bias_pct: float


@dataclass
class CalibrationReport:
    """What :func:`calibrate_landmarks` did and how well the definitions match BlazePose before and after."""

    model: str
    set_name: str
    start: str  # where the starting definition came from
    seed: int
    images: int
    fit_images: int
    held_out_images: int
    detected_images: int  # renders in which BlazePose found a body
    fit_detections: int  # visible detections in the fit renders
    outliers: int  # of those, dropped as BlazePose's mistakes
    kept_start: list[str]  # landmarks seen too rarely to refit (their starting definition is kept)
    overall: LandmarkError
    landmarks: list[LandmarkError]
    seconds: float
    version: int = CALIBRATION_VERSION
    entries: dict[str, int] = field(default_factory=dict)  # landmark -> entries of the calibrated definition

    def to_dict(self) -> dict:
        def rounded(v):
            if isinstance(v, float):
                return round(v, 4)
            if isinstance(v, dict):
                return {k: rounded(x) for k, x in v.items()}
            if isinstance(v, list):
                return [rounded(x) for x in v]
            return v

        return rounded(asdict(self))

    def lines(self) -> list[str]:
        o = self.overall
        out = [
            f"{self.set_name} calibration of {self.model}: {self.images} renders (seed {self.seed}), BlazePose found "
            f"the body in {self.detected_images}; fitted on {self.fit_images} ({self.fit_detections} detections, "
            f"{self.outliers} dropped as outliers), {self.held_out_images} held out; {self.seconds:.0f} s",
            f"start: {self.start}",
            f"held-out error, % of person height (px): mean {o.before_mean_pct:.2f} ({o.before_mean_px:.1f}) -> "
            f"{o.after_mean_pct:.2f} ({o.after_mean_px:.1f}), median {o.before_median_pct:.2f} "
            f"({o.before_median_px:.1f}) -> {o.after_median_pct:.2f} ({o.after_median_px:.1f}) over {o.count} "
            "detections",
            f"systematic part (length of each landmark's median offset, mean over landmarks), % of height: "
            f"{o.before_bias_pct:.2f} -> "
            f"{o.after_bias_pct:.2f}",
            f"{'landmark':<17} {'n':>5}  {'mean % before':>13} {'after':>6}  {'median % before':>15} {'after':>6}"
            f"  {'offset % before':>15} {'after':>6}",
        ]
        for e in self.landmarks:
            out.append(f"{e.name:<17} {e.count:>5}  {e.before_mean_pct:>13.2f} {e.after_mean_pct:>6.2f}  "
                       f"{e.before_median_pct:>15.2f} {e.after_median_pct:>6.2f}  {e.before_bias_pct:>15.2f} "
                       f"{e.after_bias_pct:>6.2f}")  # fmt: skip
        if self.kept_start:
            out.append(f"kept the starting definition (too few detections): {', '.join(self.kept_start)}")
        return out


# ------------------------------------------------------------------------------------------- symmetry
def _swap_side(name: str) -> str:
    parts = name.split("_")
    swap = {"left": "right", "right": "left"}
    return "_".join(swap.get(p, p) for p in parts)


def landmark_groups(names) -> list[tuple[int, int | None]]:
    """(left, right) index pairs of mirrored names (``left_eye``/``right_eye``, ``mouth_left``/``mouth_right``)
    and (index, None) for midline names (``nose``), in the order of their first member."""
    index = {n: i for i, n in enumerate(names)}
    out, seen = [], set()
    for i, n in enumerate(names):
        if i in seen:
            continue
        other = _swap_side(n)
        if other == n or other not in index:
            out.append((i, None))
            seen.add(i)
        else:
            j = index[other]
            left, right = (i, j) if "left" in n.split("_") else (j, i)
            out.append((left, right))
            seen.update((i, j))
    return out


def mirror_map(body_model: BodyModel) -> np.ndarray:
    """(J + V,) the mirror image of each column of ``[joints; vertices]``: a joint's left/right namesake (for
    other names, the joint nearest its reflection), a vertex the one nearest its rest-pose reflection
    ``x -> 2 c - x`` about the template's centre ``c``."""
    from scipy.spatial import cKDTree

    v = body_model.v_template.detach().double().cpu().numpy()
    centre = 0.5 * (v[:, 0].max() + v[:, 0].min())
    reflect = v.copy()
    reflect[:, 0] = 2 * centre - reflect[:, 0]
    vert = cKDTree(v).query(reflect)[1]
    names = list(body_model.joint_names)
    nj = len(names)
    if all(_swap_side(n) in names for n in names):
        joints = np.array([names.index(_swap_side(n)) for n in names])
    else:
        rest = body_model.j_template.detach().double().cpu().numpy()
        r = rest.copy()
        r[:, 0] = 2 * centre - r[:, 0]
        joints = cKDTree(rest).query(r)[1]
    return np.concatenate([joints, vert + nj]).astype(np.int64)


# ------------------------------------------------------------------------------------------ rest pose
def _rest(body_model: BodyModel) -> tuple[np.ndarray, np.ndarray]:
    """Mean-shape, zero-pose joints (J, 3) and vertices (V, 3), float64."""
    with torch.no_grad():
        out = body_model(keypoint_sets=())
    return out.joints[0].double().cpu().numpy(), out.vertices[0].double().cpu().numpy()


def _apply(kp: KeypointSet, points: np.ndarray) -> np.ndarray:
    """``kp`` on points (..., J + V, 3) -> (..., K, 3)."""
    out = np.zeros((*points.shape[:-2], kp.num, 3))
    for k in range(kp.num):
        sel = kp.rows == k
        out[..., k, :] = np.einsum("n,...nc->...c", kp.weights[sel], points[..., kp.cols[sel], :])
    return out


def _kind(name: str) -> str:
    if any(p in name for p in ("nose", "eye", "ear", "mouth")):
        return "face"
    if name.endswith(("pinky", "thumb")) or (name.endswith("index") and "foot" not in name):
        return "hand"
    return "body"


def column_sides(body_model: BodyModel) -> np.ndarray:
    """(J + V,) +1 for columns of ``[joints; vertices]`` on the body's left, -1 on its right, 0 else: a joint by
    its name, a vertex by its dominant skinning joint."""
    names = body_model.joint_names
    joint_side = np.array([1 if n.startswith("left_") else -1 if n.startswith("right_") else 0 for n in names])
    dominant = body_model.weights.detach().cpu().numpy().argmax(1)
    return np.concatenate([joint_side, joint_side[dominant]]).astype(np.int64)


def _neighbourhood(rest_points: np.ndarray, num_joints: int, p: np.ndarray, kind: str,
                   allowed: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Candidate columns near rest-pose location ``p``: nearby vertices and the nearest joints (among the
    ``allowed`` columns, a (J + V,) mask)."""
    radius, most = _NEIGHBOURHOOD[kind]
    d_joint = np.linalg.norm(rest_points[:num_joints] - p, axis=1)
    d_vert = np.linalg.norm(rest_points[num_joints:] - p, axis=1)
    if allowed is not None:
        d_joint = np.where(allowed[:num_joints], d_joint, np.inf)
        d_vert = np.where(allowed[num_joints:], d_vert, np.inf)
    order = np.argsort(d_vert, kind="stable")[:most]
    order = order[d_vert[order] <= d_vert[order[0]] + radius]
    joints = np.argsort(d_joint, kind="stable")[:_CANDIDATE_JOINTS]
    joints = joints[d_joint[joints] <= _JOINT_RADIUS]
    return np.concatenate([joints, order + num_joints]).astype(np.int64)


# --------------------------------------------------------------------------------------------- groups
@dataclass
class _Group:
    """Landmarks fitted with one parameter vector theta (n,), sum(theta) = 1: landmark ``members[i]``'s
    entries are columns ``cols[i]`` with weights ``maps[i] @ theta``."""

    members: list[int]
    cols: list[np.ndarray]
    maps: list[np.ndarray]

    @property
    def size(self) -> int:
        return self.maps[0].shape[1]

    def entries(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for cols, m in zip(self.cols, self.maps, strict=True):
            w = m @ theta
            uniq, inv = np.unique(cols, return_inverse=True)
            merged = np.bincount(inv, w, minlength=len(uniq))
            keep = merged > 0
            out.append((uniq[keep], merged[keep]))
        return out

    def entry_count(self, theta: np.ndarray) -> int:
        return max(len(c) for c, _ in self.entries(theta))


def _make_group(left: int, right: int | None, primary: np.ndarray, mirror: np.ndarray) -> _Group:
    primary = np.unique(primary)
    if right is not None:
        eye = np.eye(len(primary))
        return _Group([left, right], [primary, mirror[primary]], [eye, eye])
    # Midline: one parameter per orbit {c, mirror(c)}; only columns whose mirror maps back to them.
    primary = primary[mirror[mirror[primary]] == primary]
    reps = np.unique(np.minimum(primary, mirror[primary]))
    cols = np.concatenate([reps, mirror[reps]])
    n = len(reps)
    m = np.zeros((2 * n, n))
    self_mirror = mirror[reps] == reps
    m[np.arange(n), np.arange(n)] = np.where(self_mirror, 1.0, 0.5)
    m[n + np.arange(n), np.arange(n)] = np.where(self_mirror, 0.0, 0.5)
    return _Group([left], [cols], [m])


def _groups(body_model: BodyModel, start: KeypointSet, mirror: np.ndarray) -> list[_Group]:
    """One group per landmark pair / midline landmark, with its candidates (around both members' starting
    locations, the right one's mirrored onto the left) and the starting definition's own columns."""
    joints, verts = _rest(body_model)
    rest = np.concatenate([joints, verts])
    nj = body_model.num_joints
    loc = _apply(start, rest)
    side = column_sides(body_model)
    out = []
    for left, right in landmark_groups(start.names):
        members = [left] if right is None else [left, right]
        kind = _kind(start.names[left])
        # A left landmark takes no column of the body's right side (and the right one none of its left).
        near = _neighbourhood(rest, nj, loc[left], kind, None if right is None else side >= 0)
        primary = [near, start.cols[start.rows == left]]
        if right is not None:
            near = _neighbourhood(rest, nj, loc[right], kind, side <= 0)
            primary += [mirror[near], mirror[start.cols[start.rows == right]]]
        group = _make_group(left, right, np.concatenate(primary), mirror)
        assert group.members == members
        out.append(group)
    return out


def needed_columns(body_model: BodyModel, start: KeypointSet, mirror: np.ndarray | None = None) -> np.ndarray:
    """Every column of ``[joints; vertices]`` the fit of ``start`` may use (the columns :class:`Views` keep)."""
    mirror = mirror_map(body_model) if mirror is None else mirror
    cols = [start.cols] + [c for g in _groups(body_model, start, mirror) for c in g.cols]
    return np.unique(np.concatenate(cols))


# ---------------------------------------------------------------------------------------------- solver
def _nnls_sum_to_one(a: np.ndarray, ridge: float) -> np.ndarray:
    """argmin ||a theta||^2 + ridge ||theta||^2 over theta >= 0 with sum(theta) = 1 (a heavy row of ones)."""
    from scipy.optimize import nnls

    n = a.shape[1]
    big = 1e3 * (1.0 + float(np.linalg.norm(a)))
    rows = [a, math.sqrt(ridge) * np.eye(n), np.full((1, n), big)] if ridge > 0 else [a, np.full((1, n), big)]
    rhs = np.zeros(sum(r.shape[0] for r in rows))
    rhs[-1] = big
    theta = nnls(np.concatenate(rows), rhs, maxiter=50 * max(n, 10))[0]
    return theta


def _design(views: Views, col_index: np.ndarray, group: _Group, obs: list[np.ndarray]) -> np.ndarray:
    """Residual rows (R, n) of ``group``'s members for the observations ``obs[i]`` (view indices) of each:
    ``(f x + (c - u) z) / (z0 h)`` per image axis, linear in theta (see the module doc)."""
    blocks = []
    for cols, m, k, views_k in zip(group.cols, group.maps, group.members, obs, strict=True):
        if len(views_k) == 0:
            continue
        p = views.points[views_k][:, col_index[cols]].astype(np.float64)  # (n_obs, m, 3)
        uv = views.landmarks[views_k, k].astype(np.float64)  # (n_obs, 2)
        f = views.focal[views_k, None]
        c = views.principal_point[views_k]
        z = p[..., 2]
        z0 = np.median(z, axis=1, keepdims=True)
        scale = z0 * views.height_px[views_k, None]
        ax = (f * p[..., 0] + (c[:, :1] - uv[:, :1]) * z) / scale
        ay = (f * p[..., 1] + (c[:, 1:] - uv[:, 1:]) * z) / scale
        blocks.append(np.concatenate([ax, ay]) @ m)
    return np.concatenate(blocks) if blocks else np.zeros((0, group.size))


def _errors(views: Views, kp_points: np.ndarray) -> np.ndarray:
    """(N, K) image distance (pixels) between the detections and camera-frame points (N, K, 3)."""
    z = np.maximum(kp_points[..., 2:], 1e-6)
    uv = kp_points[..., :2] / z * views.focal[:, None, None] + views.principal_point[:, None]
    return np.linalg.norm(uv - views.landmarks, axis=-1)


def project_keypoints(kp: KeypointSet, views: Views) -> np.ndarray:
    """(N, K, 2) pixels of ``kp``'s keypoints in each view (its columns must be among ``views.cols``)."""
    pts = _points(kp, views)
    return pts[..., :2] / np.maximum(pts[..., 2:], 1e-6) * views.focal[:, None, None] + views.principal_point[:, None]


def _col_index(views: Views, size: int) -> np.ndarray:
    index = np.full(size, -1, np.int64)
    index[views.cols] = np.arange(len(views.cols))
    return index


def _points(kp: KeypointSet, views: Views) -> np.ndarray:
    index = _col_index(views, int(max(kp.cols.max(), views.cols.max())) + 1)
    if (index[kp.cols] < 0).any():
        raise ValueError("the views do not hold every column of the keypoint set")
    local = KeypointSet(kp.names, kp.rows, index[kp.cols], kp.weights)
    return _apply(local, views.points.astype(np.float64))


def _prior(group: _Group, rest: np.ndarray, loc: np.ndarray, height: float, weight: float) -> np.ndarray:
    """Rows (3 per member, n) pulling each member's rest-pose location towards its starting location ``loc[k]``,
    in body heights, each weighted like ``weight`` detections."""
    rows = [(rest[c] - loc[k]).T @ m for k, c, m in zip(group.members, group.cols, group.maps, strict=True)]
    return math.sqrt(weight) * np.concatenate(rows) / height


def _solve_group(views: Views, col_index: np.ndarray, group: _Group, obs: list[np.ndarray], ridge: float,
                 prior: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """theta for ``group``: NNLS with sum(theta) = 1 (and the ``prior`` rows), then backward elimination (drop weights
    under MIN_WEIGHT, and the smallest ones while there are more than MAX_ENTRIES entries, refitting after each)."""
    a = _design(views, col_index, group, obs)
    lam = ridge * max(len(a), 1)
    if prior is not None:
        a = np.concatenate([a, prior])
    keep = np.arange(group.size)
    theta = _nnls_sum_to_one(a, lam)
    while True:
        drop = theta < MIN_WEIGHT
        if drop.all():
            drop = theta < theta.max()
        full = np.zeros(group.size)
        full[keep[~drop]] = theta[~drop]
        excess = group.entry_count(full) - MAX_ENTRIES
        if excess > 0 and not drop.any():
            # The smallest weights go, a third of the excess at a time (at least one).
            smallest = np.argsort(theta, kind="stable")[: max(1, excess // 3)]
            drop[smallest] = True
        if not drop.any():
            break
        keep = keep[~drop]
        theta = _nnls_sum_to_one(a[:, keep], lam)
    out = np.zeros(group.size)
    out[keep] = theta
    return out / out.sum()


def fit_landmarks(body_model: BodyModel, views: Views, start: KeypointSet, *, ridge: float = RIDGE,
                  prior: float = PRIOR_OBSERVATIONS, mirror: np.ndarray | None = None) -> tuple[KeypointSet, dict]:  # fmt: skip
    """The calibrated definition of ``start``'s landmarks on the views not held out (module doc, steps 3-4).

    ``prior``: how many detections the starting rest-pose location of each landmark counts as (0: none).
    Returns the set (same names as ``start``) and counts: ``detections`` used, ``outliers`` dropped,
    ``kept_start`` names left at their starting definition (fewer than MIN_OBSERVATIONS detections).
    """
    mirror = mirror_map(body_model) if mirror is None else mirror
    groups = _groups(body_model, start, mirror)
    joints, verts = _rest(body_model)
    rest = np.concatenate([joints, verts])
    loc = _apply(start, rest)
    height = float(np.ptp(verts[:, 1]))
    col_index = _col_index(views, body_model.num_joints + body_model.num_vertices)
    start_err = _errors(views, _points(start, views)) / views.height_px[:, None]
    fit = views.visible & ~views.held_out[:, None]
    rows, cols, weights = [], [], []
    info = {"detections": int(fit.sum()), "outliers": 0, "kept_start": [], "entries": {}}
    for g in groups:
        obs = [np.flatnonzero(fit[:, k] & (start_err[:, k] < GROSS_ERROR)) for k in g.members]
        if sum(len(o) for o in obs) < MIN_OBSERVATIONS:
            for k in g.members:
                sel = start.rows == k
                rows.append(start.rows[sel])
                cols.append(start.cols[sel])
                weights.append(start.weights[sel])
                info["kept_start"].append(start.names[k])
            continue
        pull = _prior(g, rest, loc, height, prior) if prior > 0 else None
        theta = _solve_group(views, col_index, g, obs, ridge, pull)
        # Second pass without BlazePose's own mistakes.
        kp = _group_set(start.names, g, theta)
        err = _errors(views, _points(kp, views)) / views.height_px[:, None]
        inliers = []
        for k, o in zip(g.members, obs, strict=True):
            e = err[o, k]
            thr = max(OUTLIER_FACTOR * float(np.median(e)), OUTLIER_FLOOR) if len(e) else 0.0
            inliers.append(o[e <= thr])
        info["outliers"] += sum(len(o) - len(i) for o, i in zip(obs, inliers, strict=True))
        theta = _solve_group(views, col_index, g, inliers, ridge, pull)
        for k, (c, w) in zip(g.members, g.entries(theta), strict=True):
            rows.append(np.full(len(c), k))
            cols.append(c)
            weights.append(w)
            info["entries"][start.names[k]] = len(c)
    order = np.argsort(np.concatenate(rows), kind="stable")
    kp = KeypointSet(
        tuple(start.names),
        np.concatenate(rows).astype(np.int64)[order],
        np.concatenate(cols).astype(np.int64)[order],
        np.concatenate(weights).astype(np.float64)[order],
    )
    return kp, info


def _group_set(names, group: _Group, theta: np.ndarray) -> KeypointSet:
    rows, cols, weights = [], [], []
    for k, (c, w) in zip(group.members, group.entries(theta), strict=True):
        rows.append(np.full(len(c), k))
        cols.append(c)
        weights.append(w)
    return KeypointSet(tuple(names), np.concatenate(rows), np.concatenate(cols), np.concatenate(weights))


# -------------------------------------------------------------------------------------- another topology
def transfer_definition(source: BodyModel, target: BodyModel, set_name: str = SET_NAME,
                        definition: KeypointSet | None = None) -> KeypointSet:  # fmt: skip
    """``source``'s keypoint set carried over to ``target`` (any topology with the same joint tree): each rest-pose
    keypoint is expressed on its nearest bone of ``source`` (position along the bone, perpendicular offset), put
    at the same place on ``target``'s bone (the offset scaled by the ratio of body heights) and written as the
    nearest convex, left/right-symmetric combination of ``target``'s vertices and joints around it. ``definition``:
    the set of ``source`` to carry over (default: its ``set_name``)."""
    if source.parents != target.parents:
        raise ValueError(f"cannot carry {set_name} over from {source.name!r} to {target.name!r}: their joint trees "
                         "differ")  # fmt: skip
    kp = definition
    if kp is None and set_name in source.keypoint_set_names:
        kp = source.keypoint_regressors[set_name].definition()
    if kp is None:
        raise ValueError(f"body model {source.name!r} does not define {set_name}")
    js, vs = _rest(source)
    jt, vt = _rest(target)
    p_src = _apply(kp, np.concatenate([js, vs]))
    ratio = np.ptp(vt[:, 1]) / np.ptp(vs[:, 1])
    bones = [(j, p) for j, p in enumerate(source.parents) if p >= 0]
    p_tgt = np.zeros_like(p_src)
    for k, p in enumerate(p_src):
        best = None
        for j, parent in bones:
            a, b = js[parent], js[j]
            t = float(np.clip(np.dot(p - a, b - a) / max(np.dot(b - a, b - a), 1e-12), 0.0, 1.0))
            d = np.linalg.norm(p - (a + t * (b - a)))
            if best is None or d < best[0]:
                best = (d, j, parent, t)
        _, j, parent, t = best
        base_s = js[parent] + t * (js[j] - js[parent])
        base_t = jt[parent] + t * (jt[j] - jt[parent])
        p_tgt[k] = base_t + (p - base_s) * ratio
    # Nearest symmetric convex combination around each carried-over point (3D rows, the same solver).
    mirror = mirror_map(target)
    side = column_sides(target)
    rest = np.concatenate([jt, vt])
    nj = target.num_joints
    rows, cols, weights = [], [], []
    for left, right in landmark_groups(kp.names):
        members = [left] if right is None else [left, right]
        near = [_neighbourhood(rest, nj, p_tgt[left], "face", None if right is None else side >= 0)[:19]]
        if right is not None:
            near.append(mirror[_neighbourhood(rest, nj, p_tgt[right], "face", side <= 0)[:19]])
        g = _make_group(left, right, np.concatenate(near), mirror)
        a = np.concatenate([(rest[c] - p_tgt[k]).T @ m for k, c, m in zip(members, g.cols, g.maps, strict=True)])
        theta = _nnls_sum_to_one(a, 0.0)
        theta[theta < 1e-4] = 0.0
        theta /= theta.sum()
        for k, (c, w) in zip(members, g.entries(theta), strict=True):
            rows.append(np.full(len(c), k))
            cols.append(c)
            weights.append(w)
    order = np.argsort(np.concatenate(rows), kind="stable")
    return KeypointSet(
        tuple(kp.names),
        np.concatenate(rows).astype(np.int64)[order],
        np.concatenate(cols).astype(np.int64)[order],
        np.concatenate(weights)[order],
    )


def default_geometric_definition() -> KeypointSet:
    """The bundled default model's geometric ``blazepose33`` definition (the one its calibration started from,
    kept in its file as ``kp_blazepose33_geometric_*``; its own set where the file has no such copy)."""
    from hmr.body.assets import default_model_path
    from hmr.io.arrays import load_npz

    arrays = load_npz(default_model_path())
    key = GEOMETRIC_SET if f"kp_{GEOMETRIC_SET}_names" in arrays else SET_NAME
    return KeypointSet(
        tuple(str(n) for n in arrays[f"kp_{key}_names"]),
        np.asarray(arrays[f"kp_{key}_rows"], np.int64),
        np.asarray(arrays[f"kp_{key}_cols"], np.int64),
        np.asarray(arrays[f"kp_{key}_weights"], np.float64),
    )


def starting_definition(body_model: BodyModel) -> tuple[KeypointSet, str]:
    """The definition calibration starts from, and where it came from: the model's own ``blazepose33`` when it
    defines one, else the bundled default model's geometric definition carried over by the joints
    (:func:`transfer_definition`), the same start the default model's own calibration had."""
    if SET_NAME in body_model.keypoint_set_names:
        return body_model.keypoint_regressors[SET_NAME].definition(), f"the model's own {SET_NAME} definition"
    default = BodyModel.default(dtype=torch.float64)
    return (
        transfer_definition(default, body_model, SET_NAME, default_geometric_definition()),
        f"{default.name}'s geometric {SET_NAME} definition carried over by the joints (the model defines none)",
    )


# --------------------------------------------------------------------------------------------- the views
def _scene(body_model: BodyModel, rng: np.random.Generator) -> dict:
    """One person and camera: image size, focal, pose, shape, and the camera-frame joints and vertices."""
    w, h = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    focal = float(rng.uniform(0.9, 1.6) * max(w, h))
    elev, roll = np.radians(rng.uniform(-10, 25)), np.radians(rng.uniform(-5, 5))
    # Body frame (y up, facing +z) -> camera (y down): diag(1, -1, -1) faces the camera; elevation, roll.
    cam_rot = _rot([0, 0, roll]) @ _rot([elev, 0, 0]) @ np.diag([1.0, -1.0, -1.0])
    names = list(POSE_MIX)
    p = np.array([POSE_MIX[n] for n in names])
    go_body, body_pose = sample_pose(names[int(rng.choice(len(names), p=p / p.sum()))], rng)
    if rng.random() < FRONT_SHARE:
        yaw = rng.uniform(-FRONT_YAW_DEG, FRONT_YAW_DEG)
    else:
        yaw = rng.uniform(FRONT_YAW_DEG, 360 - FRONT_YAW_DEG)
    orient = matrix_to_axis_angle(torch.as_tensor(cam_rot @ _rot([0, np.radians(yaw), 0]) @ _rot(go_body))[None])
    nb = min(body_model.num_betas, 10)
    betas = sample_betas(rng, nb)
    fill = rng.uniform(*FILL)
    dt = body_model.v_template.dtype
    with torch.no_grad():
        out = body_model(orient.to(dt), torch.as_tensor(body_pose[None], dtype=dt),
                         torch.as_tensor(betas[None], dtype=dt), keypoint_sets=())  # fmt: skip
    joints, verts = out.joints[0].double().numpy(), out.vertices[0].double().numpy()
    # Depth for the wanted height (two corrections for perspective), then a random place inside the image.
    lo, hi = verts.min(0), verts.max(0)
    centre = (lo + hi) / 2
    z = focal * (hi[1] - lo[1]) / (fill * h) + (hi[2] - lo[2]) / 2
    shift = np.zeros(2)
    for _ in range(3):
        t = np.array([shift[0] - centre[0], shift[1] - centre[1], z - centre[2]])
        uv = (verts[:, :2] + t[:2]) / (verts[:, 2:] + t[2]) * focal
        size = uv.max(0) - uv.min(0)
        z *= max(size[1] / (fill * h), size[0] / (0.96 * w))
    t = np.array([-centre[0], -centre[1], z - centre[2]])
    uv = (verts[:, :2] + t[:2]) / (verts[:, 2:] + t[2]) * focal
    box_lo, box_hi = uv.min(0), uv.max(0)
    room = np.maximum(np.array([w, h]) * 0.98 - (box_hi - box_lo), 0.0)
    target = -np.array([w, h]) / 2 * 0.98 + rng.uniform(0, 1, 2) * room  # box corner (principal point origin)
    t[:2] += (target - box_lo) * t[2] / focal
    verts, joints = verts + t, joints + t
    uv = verts[:, :2] / verts[:, 2:] * focal + np.array([w / 2, h / 2])
    box = np.concatenate([uv.min(0), uv.max(0)])
    return {"size": (w, h), "focal": focal, "joints": joints, "vertices": verts, "box": box}


def sample_views(body_model: BodyModel, columns: np.ndarray, num_images: int, seed: int = 0, *, detect: bool = True,
                 estimator=None, progress: bool = False) -> Views:  # fmt: skip
    """``num_images`` views (module doc, steps 1-2); ``detect=False`` skips rendering and BlazePose (landmarks
    zero, nothing visible), e.g. to make detections from a known definition."""
    from tqdm import tqdm

    if body_model.num_joints != len(SMPL_JOINT_NAMES):
        raise ValueError(f"body model {body_model.name!r} has {body_model.num_joints} joints; calibration poses "
                         f"SMPL's {len(SMPL_JOINT_NAMES)}-joint tree")  # fmt: skip
    columns = np.asarray(columns, np.int64)
    k = len(BLAZEPOSE33_NAMES)
    n = int(num_images)
    views = Views(
        cols=columns,
        points=np.zeros((n, len(columns), 3), np.float32),
        focal=np.zeros(n),
        principal_point=np.zeros((n, 2)),
        image_size=np.zeros((n, 2)),
        height_px=np.zeros(n),
        landmarks=np.zeros((n, k, 2)),
        visible=np.zeros((n, k), bool),
        detected=np.zeros(n, bool),
        held_out=np.arange(n) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1,
    )
    gen = None
    own_estimator = False
    if detect:
        from hmr.landmarks import PoseEstimator
        from hmr.landmarks.blazepose import box_to_roi

        gen = SynthGenerator(body_model, people_per_image=1, image_size=IMAGE_SIZES[0])
        faces = gen.faces
        if estimator is None:
            estimator, own_estimator = PoseEstimator(), True
    try:
        for i in tqdm(range(n), desc=f"calibrating {SET_NAME}", unit="img", disable=not progress):
            rng = np.random.default_rng([int(seed), i])
            s = _scene(body_model, rng)
            w, h = s["size"]
            points = np.concatenate([s["joints"], s["vertices"]])
            views.points[i] = points[columns]
            views.focal[i] = s["focal"]
            views.principal_point[i] = (w / 2, h / 2)
            views.image_size[i] = (w, h)
            views.height_px[i] = s["box"][3] - s["box"][1]
            if not detect:
                continue
            camera = Camera(torch.tensor([[s["focal"]] * 2]), torch.tensor([[w / 2, h / 2]]),
                            torch.tensor([[float(w), float(h)]]))  # fmt: skip
            colors = gen.person_colors(rng)
            background = procedural_background(rng, w, h)
            image = gen.renderer(w, h).render([s["vertices"].astype(np.float32)], faces, camera, colors=[colors],
                                              background=background, maps=False).image  # fmt: skip
            found = estimator.from_roi(image, box_to_roi(s["box"]))
            if found is None:
                continue
            views.detected[i] = True
            views.landmarks[i] = found.keypoints_2d
            views.visible[i] = found.confidence >= MIN_VISIBILITY
    finally:
        if gen is not None:
            gen.close()
        if own_estimator:
            estimator.close()
    return views


# ----------------------------------------------------------------------------------------------- report
def landmark_offsets(views: Views, kp: KeypointSet, mask: np.ndarray) -> np.ndarray:
    """(N, K, 2) ``kp``'s projections minus the detections, pixels; NaN where ``mask`` is False."""
    return np.where(mask[..., None], project_keypoints(kp, views) - views.landmarks, np.nan)


def _summary(name: str, before: np.ndarray, after: np.ndarray, height: np.ndarray) -> LandmarkError:
    """Statistics of offsets (n, 2) pixels (NaN rows: no detection) for person heights (n,)."""
    ok = ~np.isnan(before[:, 0])
    b, a, hh = before[ok], after[ok], height[ok, None]
    if not len(b):
        nan = float("nan")
        return LandmarkError(name, 0, *([nan] * 10))
    bd, ad = np.linalg.norm(b, axis=1), np.linalg.norm(a, axis=1)
    bp, ap = 100 * bd / hh[:, 0], 100 * ad / hh[:, 0]
    bias_b = float(np.linalg.norm(np.median(100 * b / hh, axis=0)))
    bias_a = float(np.linalg.norm(np.median(100 * a / hh, axis=0)))
    return LandmarkError(
        name, int(len(b)), float(bp.mean()), float(np.median(bp)), float(ap.mean()), float(np.median(ap)),
        float(bd.mean()), float(np.median(bd)), float(ad.mean()), float(np.median(ad)), bias_b, bias_a,
    )  # fmt: skip


def evaluate(views: Views, before: KeypointSet, after: KeypointSet) -> tuple[LandmarkError, list[LandmarkError]]:
    """Held-out errors of the two definitions: overall and per landmark."""
    mask = views.visible & views.held_out[:, None]
    ob, oa = landmark_offsets(views, before, mask), landmark_offsets(views, after, mask)
    height = np.broadcast_to(views.height_px[:, None], mask.shape)
    per = [_summary(n, ob[:, k], oa[:, k], height[:, k]) for k, n in enumerate(before.names)]
    overall = _summary("all", ob.reshape(-1, 2), oa.reshape(-1, 2), height.ravel())
    # Overall systematic part: the mean over landmarks of each one's (offsets point different ways per landmark).
    seen = [e for e in per if e.count]
    if seen:
        overall.before_bias_pct = float(np.mean([e.before_bias_pct for e in seen]))
        overall.after_bias_pct = float(np.mean([e.after_bias_pct for e in seen]))
    return overall, per


# ------------------------------------------------------------------------------------------------ entry
def calibrate_landmarks(body_model: BodyModel, num_images: int = 800, seed: int = 0, progress: bool = True,
                        estimator=None, start: KeypointSet | None = None) -> tuple[KeypointSet, CalibrationReport]:  # fmt: skip
    """The model's ``blazepose33`` set calibrated to BlazePose (module doc) and the report.

    ``estimator``: a ``hmr.landmarks.PoseEstimator`` to reuse (default: a new one, closed afterwards).
    ``start``: the definition to start from (default: :func:`starting_definition`).
    """
    t0 = time.perf_counter()
    if num_images < HOLDOUT_EVERY:
        raise ValueError(f"need at least {HOLDOUT_EVERY} images (one in {HOLDOUT_EVERY} is held out), got {num_images}")
    if start is None:
        start, start_text = starting_definition(body_model)
    else:
        start_text = f"a given {SET_NAME} definition"
    if tuple(start.names) != BLAZEPOSE33_NAMES:
        raise ValueError(f"body model {body_model.name!r}: its {SET_NAME} set does not have BlazePose's 33 names")
    mirror = mirror_map(body_model)
    views = sample_views(body_model, needed_columns(body_model, start, mirror), num_images, seed,
                         estimator=estimator, progress=progress)  # fmt: skip
    if not views.visible[~views.held_out].any():
        raise ValueError(f"BlazePose found no landmarks in any of the {num_images} renders of body model "
                         f"{body_model.name!r}; is it a human body in SMPL's frame (+y up, facing +z)?")  # fmt: skip
    kp, info = fit_landmarks(body_model, views, start, mirror=mirror)
    overall, per = evaluate(views, start, kp)
    report = CalibrationReport(
        model=str(body_model.name),
        set_name=SET_NAME,
        start=start_text,
        seed=int(seed),
        images=int(num_images),
        fit_images=int((~views.held_out).sum()),
        held_out_images=int(views.held_out.sum()),
        detected_images=int(views.detected.sum()),
        fit_detections=info["detections"],
        outliers=info["outliers"],
        kept_start=info["kept_start"],
        overall=overall,
        landmarks=per,
        seconds=time.perf_counter() - t0,
        entries=info["entries"],
    )
    return kp, report


def with_keypoint_set(arrays: dict[str, np.ndarray], kp: KeypointSet, record: dict | None = None,
                      set_name: str = SET_NAME) -> dict[str, np.ndarray]:  # fmt: skip
    """A body model file's arrays with ``set_name`` replaced by ``kp`` (listed in ``keypoint_sets``) and ``record``
    stored in its ``build_info`` JSON under ``"<set_name>_calibration"``; every other array is kept as it is."""
    out = dict(arrays)
    out.update(keypoint_set_arrays(set_name, kp))
    listed = np.asarray(arrays.get("keypoint_sets", []), dtype=str).tolist()
    if set_name not in listed:
        out["keypoint_sets"] = np.asarray([*listed, set_name], dtype=str)
    if record is not None:
        info = json.loads(str(arrays["build_info"])) if "build_info" in arrays else {}
        info[f"{set_name}_calibration"] = record
        out["build_info"] = np.str_(json.dumps(info, sort_keys=True))
    return out
