"""Pose, shape and motion priors that need no licensed data: joint-angle limits, bending directions, regularisers.

Every term is a :class:`Penalty`, a weighted sum of squares that gives both solvers what they need from one
definition: Adam its loss, Levenberg-Marquardt its residuals (whose squares sum to that loss) and their
derivatives.

Every joint's local rotation is an axis-angle vector ``(x, y, z)`` in the body frame at rest (+x body-left,
+y up, +z facing; docs/conventions.md). For the SMPL tree at its T-pose this gives:

* knee flexion (shin goes backwards) is a positive rotation about x; a negative one bends the knee backwards;
* elbow flexion (forearm goes forwards) is a rotation about y: negative for the left arm, positive for the
  right one;
* hip flexion (thigh forwards) is negative about x; raising an arm sideways is +z (left) / -z (right); a
  spine bending forwards is positive about x.

``JOINT_LIMITS`` holds generous per-component bounds (radians) for the left side and the centre line; the
right side is the mirror image (``x, -y, -z``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from hmr.body.keypoints import SMPL_JOINT_NAMES


def _deg(*bounds: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    return tuple((math.radians(lo), math.radians(hi)) for lo, hi in bounds)


# (x, y, z) component bounds in degrees for the local axis-angle of each joint (left side / centre line).
_LEFT_LIMITS = {
    "left_hip": _deg((-130, 35), (-45, 45), (-30, 50)),
    "left_knee": _deg((0, 150), (-20, 20), (-10, 10)),
    "left_ankle": _deg((-45, 35), (-25, 25), (-25, 25)),
    "left_foot": _deg((-20, 20), (-15, 15), (-15, 15)),
    "spine1": _deg((-25, 40), (-25, 25), (-20, 20)),
    "spine2": _deg((-20, 35), (-25, 25), (-20, 20)),
    "spine3": _deg((-20, 35), (-25, 25), (-20, 20)),
    "neck": _deg((-35, 45), (-50, 50), (-30, 30)),
    "head": _deg((-25, 30), (-35, 35), (-20, 20)),
    "left_collar": _deg((-15, 15), (-20, 15), (-15, 25)),
    "left_shoulder": _deg((-70, 70), (-100, 40), (-95, 85)),
    "left_elbow": _deg((-60, 60), (-150, 0), (-10, 10)),
    "left_wrist": _deg((-40, 40), (-45, 45), (-60, 60)),
    "left_hand": _deg((-15, 15), (-15, 15), (-15, 15)),
}


def _mirror(bounds: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
    (xl, xh), (yl, yh), (zl, zh) = bounds
    return ((xl, xh), (-yh, -yl), (-zh, -zl))


JOINT_LIMITS: dict[str, tuple[tuple[float, float], ...]] = {
    **_LEFT_LIMITS,
    **{k.replace("left_", "right_"): _mirror(v) for k, v in _LEFT_LIMITS.items() if k.startswith("left_")},
}

# Hinge joints: (joint, axis component, sign of flexion). Bending the other way is "bending backwards".
HINGES = (("left_knee", 0, 1.0), ("right_knee", 0, 1.0), ("left_elbow", 1, -1.0), ("right_elbow", 1, 1.0))

# The mean pose fits start from and the regulariser pulls towards (degrees, left side; right mirrored): a
# relaxed stance with arms lowered slightly in front of the body and elbows and knees slightly bent. Starting
# with bent hinges also breaks the symmetry of a straight limb, whose depth gradient is zero.
_LEFT_MEAN = {
    "left_hip": (-15, 0, 5),
    "left_knee": (20, 0, 0),
    "left_shoulder": (0, -15, -45),
    "left_elbow": (0, -30, 0),
}

# Component along the bone of the limb joints: twists (and the elbows'/knees' off-hinge turns) are what body
# keypoints see least, and what the depth-mirrored solutions of a limb need, so they are regularised more.
_TWIST_AXIS = {
    "left_hip": 1, "right_hip": 1, "left_shoulder": 0, "right_shoulder": 0, "left_knee": [1, 2],
    "right_knee": [1, 2], "left_elbow": [0, 2], "right_elbow": [0, 2],
}  # fmt: skip

# Relative pose-regulariser weights: joints that 2D body keypoints barely observe are held near rest.
_REGULARISER_WEIGHTS = {
    "spine1": 2.0, "spine2": 2.0, "spine3": 2.0, "neck": 2.0, "head": 1.0, "left_collar": 5.0, "right_collar": 5.0,
    "left_wrist": 3.0, "right_wrist": 3.0, "left_hand": 10.0, "right_hand": 10.0, "left_foot": 5.0,
    "right_foot": 5.0,
}  # fmt: skip


@dataclasses.dataclass
class Penalty:
    """One prior term, ``weight * sum(scale * base^2)``, in the forms both solvers use.

    Adam differentiates :meth:`loss` (or :meth:`total`); Levenberg-Marquardt takes :meth:`residuals`
    ``r = sqrt(weight * scale) * base``, whose squares sum to the same loss, and their derivatives
    ``sqrt(weight * scale) * slope``. ``slope()`` gives ``d base / d parameter`` entry by entry (each entry of
    ``base`` depends on one parameter), evaluated only when LM asks; None: 1 (``base`` is a parameter, or for
    the temporal term a joint coordinate, minus a constant). ``scale``: per-component weights, or None.
    """

    base: torch.Tensor
    weight: float
    slope: Callable[[], torch.Tensor] | None = None
    scale: torch.Tensor | None = None

    def squares(self) -> torch.Tensor:
        sq = self.base.pow(2)
        return sq if self.scale is None else sq * self.scale

    def loss(self) -> torch.Tensor:
        """The penalty summed over the last axis (e.g. (B, J-1) per joint for a pose term)."""
        return self.weight * self.squares().sum(-1)

    def total(self) -> torch.Tensor:
        """The whole penalty (scalar)."""
        return self.weight * self.squares().sum(-1).sum()

    def _root(self) -> torch.Tensor | float:
        return math.sqrt(self.weight) if self.scale is None else (self.weight * self.scale).sqrt()

    def residuals(self) -> tuple[torch.Tensor, torch.Tensor | float]:
        """(r, dr): residuals shaped like ``base`` with ``sum(r^2) == total()``, and ``dr / d parameter``."""
        root = self._root()
        return root * self.base, root * (1.0 if self.slope is None else self.slope())

    def normal_terms(self) -> tuple[torch.Tensor, torch.Tensor | float, torch.Tensor]:
        """Levenberg-Marquardt's share, entry by entry, of a penalty whose entries each depend on one parameter:
        residuals r, the diagonal of J^T J (dr^2) and J^T r (a constant derivative is folded with the weight in
        double precision first)."""
        r, dr = self.residuals()
        return r, dr**2, (dr * self._root()) * self.base if isinstance(dr, float) else dr * r


class PosePrior(torch.nn.Module):
    """Joint limits, bending directions and the pose regulariser for the SMPL 24-joint tree.

    Works on ``body_pose`` (B, 23, 3) axis-angle (the root has no prior). Models whose joints are not the
    SMPL 24 get a plain L2 regulariser only.
    """

    def __init__(self, joint_names: tuple[str, ...], twist_weight: float = 4.0):
        super().__init__()
        self.twist_weight = twist_weight
        body = joint_names[1:]
        smpl = tuple(joint_names) == SMPL_JOINT_NAMES
        lo = torch.full((len(body), 3), -math.pi)
        hi = torch.full((len(body), 3), math.pi)
        reg = torch.ones(len(body), 3)
        hinge_mask = torch.zeros(len(body), 3)
        mean = torch.zeros(len(body), 3)
        if smpl:
            for i, name in enumerate(body):
                if name in JOINT_LIMITS:
                    lo[i], hi[i] = torch.tensor(JOINT_LIMITS[name]).unbind(-1)
                reg[i] = _REGULARISER_WEIGHTS.get(name, 1.0)
                if name in _TWIST_AXIS:
                    reg[i, _TWIST_AXIS[name]] *= self.twist_weight
                left = name.replace("right_", "left_")
                if left in _LEFT_MEAN:
                    x, y, z = (math.radians(a) for a in _LEFT_MEAN[left])
                    mean[i] = torch.tensor([x, y, z] if left == name else [x, -y, -z])
            for name, axis, sign in HINGES:
                hinge_mask[body.index(name), axis] = sign
        self.has_limits = smpl
        self.register_buffer("lower", lo)
        self.register_buffer("upper", hi)
        self.register_buffer("reg_weights", reg)
        self.register_buffer("hinge_sign", hinge_mask)
        self.register_buffer("mean_pose", mean)

    def limits(self, body_pose: torch.Tensor, weight: float = 1.0) -> Penalty:
        """Squared hinge on leaving the per-component bounds (radians^2)."""
        over = torch.relu(body_pose - self.upper) + torch.relu(self.lower - body_pose)

        def slope() -> torch.Tensor:
            return (body_pose > self.upper).to(body_pose.dtype) - (body_pose < self.lower).to(body_pose.dtype)

        return Penalty(over, weight, slope)

    def bending(self, body_pose: torch.Tensor, weight: float = 1.0) -> Penalty:
        """Squared amount by which elbows/knees bend backwards."""
        flexion = body_pose * self.hinge_sign
        return Penalty(torch.relu(-flexion), weight, lambda: -self.hinge_sign * (flexion < 0))

    def deviation(self, body_pose: torch.Tensor, anchor: torch.Tensor | None = None, weight: float = 1.0,
                  joints: torch.Tensor | None = None) -> Penalty:  # fmt: skip
        """Weighted squared distance (axis-angle) to ``anchor`` (B, J-1, 3), by default the mean pose; the
        weights are highest on joints that body keypoints barely see. ``joints`` (B, J-1, 1): a factor per
        person and joint (e.g. 1 on the joints nothing observes, 0 elsewhere)."""
        anchor = self.mean_pose if anchor is None else anchor
        scale = self.reg_weights if joints is None else self.reg_weights * joints
        return Penalty(body_pose - anchor, weight, scale=scale)

    def limit_penalty(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B, J-1) squared hinge on leaving the per-component bounds (radians^2)."""
        return self.limits(body_pose).loss()

    def regulariser(self, body_pose: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """(B, J-1) the pose regulariser (see :meth:`deviation`)."""
        return self.deviation(body_pose, anchor).loss()

    def bending_penalty(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B, J-1) squared amount by which elbows/knees bend backwards."""
        return self.bending(body_pose).loss()

    @torch.no_grad()
    def project_(self, body_pose: torch.Tensor) -> None:
        """Hard constraint, in place: elbows and knees never bend backwards (projected gradient step)."""
        bent_back = (body_pose * self.hinge_sign) < 0
        body_pose.masked_fill_(bent_back, 0.0)

    def backward_bends(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B, 4) hinge flexion angles (radians; negative = bent backwards) for knees and elbows."""
        return (body_pose * self.hinge_sign).sum(-1)[:, self.hinge_sign.abs().sum(-1) > 0]


def shape_penalty(betas: torch.Tensor, weight: float = 1.0, scale: torch.Tensor | None = None) -> Penalty:
    """Squared norm of the shape coefficients (betas are in standard deviations), each component weighted by
    ``scale`` (S,) when given (see :func:`height_scale`)."""
    return Penalty(betas, weight, scale=scale)


def height_scale(shapedirs: torch.Tensor, v_template: torch.Tensor, num_betas: int, weight: float) -> torch.Tensor:
    """(S,) per-component factors ``1 + weight * g_s^2`` of the shape regulariser, ``g_s`` the change of the rest
    body's height (metres, along +y) per standard deviation of component s. One image does not tell a tall person
    far away from a short one nearby (2D keypoints scale with height / depth; a detector's 3D landmarks come at
    its own average scale), so the components that change height need the prior most."""
    y = v_template[:, 1]
    top, bottom = int(torch.argmax(y)), int(torch.argmin(y))
    g = shapedirs[top, 1, :num_betas] - shapedirs[bottom, 1, :num_betas]
    return 1.0 + weight * g.double().pow(2)


def temporal_penalty(joints: torch.Tensor, frames: int, people: int, prediction: torch.Tensor | None,
                     weight: float) -> Penalty | None:  # fmt: skip
    """Joint motion (metres), flattened: the joints' (N, J, 3) distance to ``prediction`` (online, constant
    velocity; slope 1 with respect to the joints), or without one their acceleration over the frames of a
    video batch (frame-major, N = frames * people; None for fewer than 3 frames)."""
    if prediction is not None:
        return Penalty((joints - prediction).flatten(), weight)
    if frames < 3:
        return None
    j = joints.reshape(frames, people, -1, 3)
    return Penalty((j[2:] - 2 * j[1:-1] + j[:-2]).flatten(), weight)
