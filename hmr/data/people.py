"""Procedural synthetic people: the fitter's test set (:func:`make_synthetic_set`; ``python -m
hmr.data.people OUT.npz`` writes the committed ``tests/data/fitting_synthetic.npz``) and the pose-category
and shape samplers of the image generator :mod:`hmr.data.synth` (:func:`sample_pose`, :func:`sample_betas`).

Fitting set. Poses: every joint's axis-angle components are drawn uniformly from hand-set ranges inside
:data:`hmr.fitting.priors.JOINT_LIMITS` (bent elbows and knees, arm raises forwards/sideways, leg lifts,
torso bends and twists, small head/wrist/ankle motion); a pose is redrawn until the mean rotation angle
of the 8 limb joints (shoulders, elbows, hips, knees) is at least ``min_limb_rotation_deg``.
Cameras: the person faces the camera within +-``max_yaw_deg``, seen from slightly above or below, with a
pinhole camera of focal 0.8-1.6x the image's larger side, at a distance where their mesh fills 40-80% of
the image height (at most 90% of either side), at a random place inside the image.

Generator poses (:data:`POSE_CATEGORIES`, drawn with these weights): standing 25%, walking 20%, sitting
15%, reaching 15%, crouching 15%, lying 10%. A category is a table of per-joint (x, y, z) axis-angle
ranges in degrees (left side and centre line; the right side mirrored as ``x, -y, -z``), each inside
:data:`hmr.fitting.priors.JOINT_LIMITS` (checked on import); components are drawn uniformly and joints not
listed stay at rest. Each category also draws a root tilt in the body frame; ``lying`` turns the root to
horizontal (on the back, front or either side). Shapes (:func:`sample_betas`): ``betas_k ~ N(0,
BETA_SCALES_k)`` clipped to +-2.5, with scale 1.0 for the first two components and 0.7 for the others.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from hmr.body import SMPL_JOINT_NAMES, BodyModel
from hmr.fitting.priors import JOINT_LIMITS
from hmr.geometry import Camera, axis_angle_to_matrix, matrix_to_axis_angle

GENERATOR_VERSION = 1
LIMB_JOINTS = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_hip", "right_hip",
               "left_knee", "right_knee")  # fmt: skip

# Sampling ranges (degrees) for the left side / centre line; the right side is mirrored (x, -y, -z).
_SAMPLE_DEG = {
    "left_hip": ((-70, 15), (-15, 15), (-5, 25)),
    "left_knee": ((3, 100), (-5, 5), (-3, 3)),
    "left_ankle": ((-20, 20), (-10, 10), (-10, 10)),
    "spine1": ((-10, 20), (-12, 12), (-8, 8)),
    "spine2": ((-5, 15), (-12, 12), (-8, 8)),
    "spine3": ((-5, 15), (-12, 12), (-8, 8)),
    "neck": ((-15, 25), (-30, 30), (-10, 10)),
    "head": ((-10, 15), (-20, 20), (-8, 8)),
    "left_shoulder": ((-30, 30), (-50, 15), (-75, 45)),
    "left_elbow": ((-20, 20), (-100, -5), (-5, 5)),
    "left_wrist": ((-15, 15), (-15, 15), (-20, 20)),
}


def sample_ranges(joint: str) -> np.ndarray | None:
    if joint in _SAMPLE_DEG:
        return np.radians(np.asarray(_SAMPLE_DEG[joint], dtype=np.float64))
    mirror = joint.replace("right_", "left_")
    if joint.startswith("right_") and mirror in _SAMPLE_DEG:
        (xl, xh), (yl, yh), (zl, zh) = np.radians(np.asarray(_SAMPLE_DEG[mirror], dtype=np.float64))
        return np.array([(xl, xh), (-yh, -yl), (-zh, -zl)])
    return None


def limb_rotation_deg(body_pose: np.ndarray) -> np.ndarray:
    """(N, 23, 3) axis-angle -> (N,) mean rotation angle (degrees) of the 8 limb joints."""
    idx = [SMPL_JOINT_NAMES.index(j) - 1 for j in LIMB_JOINTS]
    return np.degrees(np.linalg.norm(body_pose[:, idx], axis=-1).mean(-1))


def sample_body_poses(n: int, rng: np.random.Generator, min_limb_rotation_deg: float = 30.0) -> np.ndarray:
    """(n, 23, 3) SMPL body poses (axis-angle), each within JOINT_LIMITS."""
    ranges = [sample_ranges(j) for j in SMPL_JOINT_NAMES[1:]]
    out = np.zeros((n, 23, 3))
    for i in range(n):
        while True:
            pose = np.zeros((23, 3))
            for j, r in enumerate(ranges):
                if r is not None:
                    pose[j] = rng.uniform(r[:, 0], r[:, 1])
            if limb_rotation_deg(pose[None])[0] >= min_limb_rotation_deg:
                break
        out[i] = pose
    return out


def _check_within_limits(body_pose: np.ndarray) -> None:
    for j, name in enumerate(SMPL_JOINT_NAMES[1:]):
        lim = np.asarray(JOINT_LIMITS.get(name, ((-math.pi, math.pi),) * 3))
        assert np.all(body_pose[:, j] >= lim[:, 0] - 1e-9) and np.all(body_pose[:, j] <= lim[:, 1] + 1e-9), name


def make_synthetic_set(body_model: BodyModel, n: int = 60, seed: int = 0, max_yaw_deg: float = 45.0) -> dict:
    """Poses, shapes and cameras of ``n`` synthetic people (arrays; see module doc)."""
    rng = np.random.default_rng(seed)
    body_pose = sample_body_poses(n, rng)
    _check_within_limits(body_pose)
    betas = np.clip(rng.normal(size=(n, 10)), -2, 2)
    yaw = np.radians(rng.uniform(-max_yaw_deg, max_yaw_deg, n))
    pitch = np.radians(rng.uniform(-10, 25, n))
    roll = np.radians(rng.uniform(-5, 5, n))
    sizes = np.array([[1920, 1080], [1280, 720], [1000, 1000], [720, 1280]])[rng.integers(0, 4, n)]
    focal = rng.uniform(0.8, 1.6, n) * sizes.max(1)
    fill = rng.uniform(0.4, 0.8, n)
    # Camera pitch (looking down) is a rotation of the person about the camera's x axis; the upright person
    # facing the camera is diag(1, -1, -1); yaw turns them about their own vertical axis.
    r = torch.as_tensor(np.stack([pitch, np.zeros(n), roll], -1))
    cam_rot = axis_angle_to_matrix(r)
    upright = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    body_yaw = axis_angle_to_matrix(torch.as_tensor(np.stack([np.zeros(n), yaw, np.zeros(n)], -1)))
    global_orient = matrix_to_axis_angle(cam_rot @ upright @ body_yaw).numpy()
    # The posed mesh is framed: its box is scaled to ``fill`` of the image (at most 90% of either side) and
    # placed at a random spot inside the image.
    rot = torch.as_tensor(cam_rot.numpy() @ upright.numpy() @ body_yaw.numpy())
    dt = body_model.v_template.dtype
    with torch.no_grad():
        verts = body_model(
            rot[:, None].to(dt), torch.as_tensor(body_pose, dtype=dt), torch.as_tensor(betas, dtype=dt)
        ).vertices
    verts = verts.double().cpu().numpy()
    cam_t = np.zeros((n, 3))
    for i in range(n):
        v = verts[i]
        lo, hi = v.min(0), v.max(0)
        extent = (hi - lo)[:2] * focal[i] / sizes[i]  # image fraction covered at 1 m depth
        near = max(extent[1] / fill[i], extent[0] / 0.9, extent[1] / 0.9)  # depth of the mesh's front
        z = near + (hi[2] - lo[2]) / 2
        half = 0.5 * extent / near  # half size as image fraction, measured at the front (an upper bound)
        centre = rng.uniform(0.5 - (0.5 - half) * 0.8, 0.5 + (0.5 - half) * 0.8)
        xy = (centre * sizes[i] - sizes[i] / 2) / focal[i] * z
        cam_t[i] = np.array([xy[0], xy[1], z]) - np.array([*(lo + hi)[:2] / 2, lo[2] + (hi[2] - lo[2]) / 2])
    return {
        "generator_version": np.int64(GENERATOR_VERSION),
        "seed": np.int64(seed),
        "body_model": np.str_(body_model.name),
        "global_orient": global_orient.astype(np.float32),
        "body_pose": body_pose.astype(np.float32),
        "betas": betas.astype(np.float32),
        "cam_t": cam_t.astype(np.float32),
        "focal_length": np.repeat(focal[:, None], 2, 1).astype(np.float32),
        "principal_point": (sizes / 2).astype(np.float32),
        "image_size": sizes.astype(np.float32),
        # Unit Gaussian noise per keypoint coordinate (scale it by the wanted pixels); 33 covers every format.
        "noise_2d": rng.normal(size=(n, 33, 2)).astype(np.float32),
    }


def load_synthetic_set(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def render_keypoints(data: dict, body_model: BodyModel, keypoint_format: str = "openpose25",
                     noise_px: float = 0.0) -> dict[str, torch.Tensor]:  # fmt: skip
    """Ground truth for ``data``: 2D keypoints (exact + ``noise_px`` Gaussian), root-relative camera-frame
    3D keypoints, the 24 camera-frame joints, and the camera."""
    from hmr.fitting.smplify import keypoint_map

    kp_def, available = keypoint_map(body_model, keypoint_format)
    t = {k: torch.as_tensor(v) for k, v in data.items() if v.dtype.kind == "f"}
    with torch.no_grad():
        out = body_model(t["global_orient"], t["body_pose"], t["betas"], t["cam_t"])
    kp = kp_def.apply(out.joints, out.vertices)
    camera = Camera(t["focal_length"], t["principal_point"], t["image_size"])
    kp2d = camera.project(kp) + noise_px * t["noise_2d"][:, : kp.shape[1]]
    conf = torch.as_tensor(available, dtype=torch.float32).expand(len(kp), -1).clone()
    return {
        "keypoints_2d": kp2d,
        "confidences": conf,
        "keypoints_3d": kp - out.joints[:, :1],
        "joints": out.joints,
        "camera": camera,
    }


def make_clip(data: dict, index: int, target: int, frames: int) -> list[dict]:
    """A clip of ``frames`` frames of person ``index`` (their shape, camera and place) whose pose moves
    linearly (in axis-angle, so within the joint limits) to the pose of person ``target``."""
    clip = []
    for t in np.linspace(0.0, 1.0, frames):
        frame = {k: (v[[index]] if v.ndim and v.shape[0] == len(data["betas"]) else v) for k, v in data.items()}
        frame["body_pose"] = ((1 - t) * data["body_pose"][[index]] + t * data["body_pose"][[target]]).astype(np.float32)
        clip.append(frame)
    return clip


# ---------------------------------------------------------------------------------- generator samplers
# Joints every category moves a little unless it says otherwise (degrees, left side / centre line).
_BASE_DEG = {
    "left_ankle": ((-12, 12), (-8, 8), (-8, 8)),
    "spine1": ((-5, 10), (-8, 8), (-5, 5)),
    "spine2": ((-5, 8), (-8, 8), (-5, 5)),
    "spine3": ((-5, 8), (-8, 8), (-5, 5)),
    "neck": ((-15, 20), (-30, 30), (-10, 10)),
    "head": ((-10, 15), (-20, 20), (-8, 8)),
    "left_collar": ((-5, 5), (-5, 5), (-5, 10)),
    "left_wrist": ((-20, 20), (-20, 20), (-30, 30)),
    "left_hand": ((-10, 10), (-10, 10), (-10, 10)),
}
# Left shoulder: z < 0 lowers the arm from the T-pose, y < 0 brings it forwards. Left elbow: y < 0 bends.
# Hips: x < 0 lifts the thigh forwards; knees: x > 0 bends.
_ARMS_DOWN = {
    "left_shoulder": ((-25, 25), (-35, 25), (-85, -50)),
    "left_elbow": ((-15, 15), (-70, -5), (-5, 5)),
}
POSE_CATEGORY_DEG: dict[str, dict[str, tuple]] = {
    "standing": {
        **_ARMS_DOWN,
        "left_hip": ((-15, 10), (-10, 10), (-3, 15)),
        "left_knee": ((0, 15), (-3, 3), (-2, 2)),
    },
    "walking": {
        "left_shoulder": ((-20, 20), (-35, 35), (-85, -60)),
        "left_elbow": ((-10, 10), (-60, -10), (-5, 5)),
        "left_hip": ((-40, 20), (-10, 10), (-3, 10)),
        "left_knee": ((5, 65), (-3, 3), (-2, 2)),
        "left_ankle": ((-20, 20), (-8, 8), (-8, 8)),
    },
    "sitting": {
        "left_shoulder": ((-25, 25), (-55, 0), (-80, -40)),
        "left_elbow": ((-15, 15), (-100, -20), (-5, 5)),
        "left_hip": ((-105, -70), (-15, 15), (0, 25)),
        "left_knee": ((65, 110), (-5, 5), (-3, 3)),
        "spine1": ((-10, 20), (-10, 10), (-5, 5)),
    },
    "reaching": {
        "left_shoulder": ((-40, 40), (-90, 20), (-40, 65)),
        "left_elbow": ((-20, 20), (-60, 0), (-5, 5)),
        "left_hip": ((-25, 10), (-10, 10), (-3, 20)),
        "left_knee": ((0, 30), (-3, 3), (-2, 2)),
        "spine1": ((-10, 25), (-20, 20), (-12, 12)),
        "spine2": ((-5, 15), (-15, 15), (-10, 10)),
    },
    "crouching": {
        "left_shoulder": ((-30, 30), (-70, -5), (-80, -25)),
        "left_elbow": ((-15, 15), (-110, -20), (-5, 5)),
        "left_hip": ((-125, -85), (-10, 20), (5, 35)),
        "left_knee": ((95, 145), (-5, 5), (-3, 3)),
        "left_ankle": ((-10, 30), (-10, 10), (-10, 10)),
        "spine1": ((5, 35), (-10, 10), (-8, 8)),
        "spine2": ((0, 25), (-10, 10), (-8, 8)),
        "spine3": ((0, 25), (-10, 10), (-8, 8)),
        "neck": ((-30, 5), (-30, 30), (-10, 10)),
    },
    "lying": {
        "left_shoulder": ((-40, 40), (-60, 30), (-85, 60)),
        "left_elbow": ((-20, 20), (-120, 0), (-5, 5)),
        "left_hip": ((-60, 10), (-15, 15), (-3, 25)),
        "left_knee": ((0, 90), (-5, 5), (-3, 3)),
    },
}
# Category -> probability in the generator's mix (see the module doc).
POSE_CATEGORIES = {"standing": 0.25, "walking": 0.20, "sitting": 0.15, "reaching": 0.15, "crouching": 0.15,
                   "lying": 0.10}  # fmt: skip
# Root tilt (body frame, degrees): a small lean for every upright category.
_ROOT_TILT_DEG = ((-8, 12), (-10, 10), (-6, 6))
BETA_SCALES = np.array([1.0, 1.0, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7])
BETA_CLIP = 2.5


def _mirror_ranges(rng_lh: np.ndarray) -> np.ndarray:
    (xl, xh), (yl, yh), (zl, zh) = rng_lh
    return np.array([(xl, xh), (-yh, -yl), (-zh, -zl)])


def category_ranges(category: str) -> np.ndarray:
    """(23, 3, 2) sampling ranges (radians, low/high) of the 23 body joints for ``category``."""
    table = {**_BASE_DEG, **POSE_CATEGORY_DEG[category]}
    out = np.zeros((23, 3, 2))
    for j, name in enumerate(SMPL_JOINT_NAMES[1:]):
        if name in table:
            out[j] = np.radians(np.asarray(table[name], dtype=np.float64))
        elif name.startswith("right_") and name.replace("right_", "left_") in table:
            out[j] = _mirror_ranges(np.radians(np.asarray(table[name.replace("right_", "left_")], dtype=np.float64)))
    return out


def _check_category_ranges() -> None:
    # Uniform draws stay inside the limits exactly when the ranges do.
    for cat in POSE_CATEGORY_DEG:
        r = category_ranges(cat)
        for j, name in enumerate(SMPL_JOINT_NAMES[1:]):
            lim = np.asarray(JOINT_LIMITS.get(name, ((-math.pi, math.pi),) * 3))
            if np.any(r[j, :, 0] < lim[:, 0] - 1e-9) or np.any(r[j, :, 1] > lim[:, 1] + 1e-9):
                raise AssertionError(f"pose category {cat!r}: range of {name} exceeds JOINT_LIMITS")


_check_category_ranges()


def sample_category(rng: np.random.Generator) -> str:
    """A category drawn with the :data:`POSE_CATEGORIES` weights."""
    names = list(POSE_CATEGORIES)
    p = np.array([POSE_CATEGORIES[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def sample_pose(category: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(global_orient (3,) in the body frame, body_pose (23, 3)) axis-angle for one person of ``category``.

    The root orientation is relative to an upright body (y up) facing +z; the caller adds yaw and camera.
    """
    if category not in POSE_CATEGORY_DEG:
        raise ValueError(f"unknown pose category {category!r}; expected one of {sorted(POSE_CATEGORY_DEG)}")
    r = category_ranges(category)
    body_pose = rng.uniform(r[..., 0], r[..., 1])
    tilt = rng.uniform(*np.radians(np.asarray(_ROOT_TILT_DEG)).T)
    root = axis_angle_to_matrix(torch.as_tensor(tilt)[None])[0].numpy()
    if category == "lying":
        # On the front (x +90 turns the front down), on the back (x -90) or on a side (z +-90).
        axis = rng.integers(0, 4)
        turn = np.zeros(3)
        turn[0 if axis < 2 else 2] = math.pi / 2 * (1 if axis % 2 == 0 else -1)
        root = axis_angle_to_matrix(torch.as_tensor(turn)[None])[0].numpy() @ root
    go = matrix_to_axis_angle(torch.as_tensor(root)[None])[0].numpy()
    return go, body_pose


def sample_betas(rng: np.random.Generator, num_betas: int = 10) -> np.ndarray:
    """(num_betas,) shape: N(0, BETA_SCALES) clipped to +-BETA_CLIP (components past 10 get scale 0.7)."""
    scales = np.concatenate([BETA_SCALES, np.full(max(0, num_betas - len(BETA_SCALES)), 0.7)])[:num_betas]
    return np.clip(rng.normal(size=num_betas) * scales, -BETA_CLIP, BETA_CLIP)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write the synthetic keypoint-fitting set (poses, shapes, cameras).")
    ap.add_argument("out", help="output .npz")
    ap.add_argument("--num", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from hmr.body import load_body_model
    from hmr.body.model import write_npz_atomic

    data = make_synthetic_set(load_body_model(), args.num, args.seed)
    write_npz_atomic(args.out, data)
    print(f"wrote {args.out}: {args.num} people, mean limb rotation "
          f"{limb_rotation_deg(data['body_pose'].astype(np.float64)).mean():.1f} deg")  # fmt: skip


if __name__ == "__main__":
    main()
