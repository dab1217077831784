"""From an annotated full image to a training crop: box, jitter, rotation, flip, colour, extreme crops.

What 4D-Humans and SMPLer do (hmr2-facts.md §5, smpler-facts.md §3.3), written so that the crop stays a
pinhole camera: the crop is the similarity ``x' = k R(θ) (x - c) + S/2`` of the image (then ``x' -> S - x'``
when flipped), the 3D keypoints and the global orientation are rotated by the same ``R(θ)`` about the
camera's optical axis (and mirrored across x = 0 when flipped), and the camera's principal point goes
through the same map while its focal length is multiplied by ``k``. Projecting the sample's 3D keypoints
with its camera therefore lands on its 2D keypoints whatever the augmentation (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hmr.data.sample import FLIP_PERMUTATION, Annotation, Sample, flip_body_pose, flip_orient
from hmr.geometry.boxes import square_side
from hmr.geometry.camera import HMR2_CROP_SIZE, HMR2_FOCAL_LENGTH


@dataclass
class AugmentConfig:
    """Training augmentation; the defaults are 4D-Humans' (``DEFAULT_AUG_PARAMS``), :data:`SMPLPOSE_AUGMENT`
    is SMPLer's. Every jitter draws a standard normal ``z``."""

    scale_factor: float = 0.3  # box side x (1 + clip(z, -1, 1) * this)
    rotation_factor: float = 30.0  # degrees: rotation = clip(z, -2, 2) * this ...
    rotation_rate: float = 0.6  # ... applied with this probability
    translation_factor: float = 0.02  # box centre moved by clip(z, -1, 1) * this * box side, per axis
    color_scale: float = 0.2  # each RGB channel x U(1 - this, 1 + this)
    flip_rate: float = 0.5  # horizontal flip probability (keypoints and SMPL pose mirrored)
    extreme_crop_rate: float = 0.1  # probability of a partial-body crop (EXTREME_CROP_GROUPS)


HMR2_AUGMENT = AugmentConfig()
SMPLPOSE_AUGMENT = AugmentConfig(scale_factor=0.25, rotation_rate=0.4, translation_factor=0.0, color_scale=0.4,
                                 extreme_crop_rate=0.0)  # fmt: skip

# Partial-body crops (4D-Humans' extreme cropping): the box becomes the keypoints of one group, so the
# network learns to predict the whole body from a part. Indices in the 44 layout (hmr.data.sample).
EXTREME_CROP_GROUPS = {
    "upper_body": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 18, 27, 28, *range(31, 44)),
    "head_shoulders": (0, 1, 2, 5, 15, 16, 17, 18, 33, 34, 37, 38, 40, 42, 43),
    "torso": (1, 2, 5, 8, 9, 12, 27, 28, 33, 34, 37, 39, 40, 41),
    "right_arm": (2, 3, 4, 31, 32, 33),
    "left_arm": (5, 6, 7, 34, 35, 36),
    "legs": (8, 9, 10, 11, 12, 13, 14, *range(19, 31), 39),
}
EXTREME_CROP_MARGIN = 1.2  # the group's keypoint box, enlarged by this


def _extreme_box(kp2d: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float] | None:
    group = list(EXTREME_CROP_GROUPS.values())[rng.integers(len(EXTREME_CROP_GROUPS))]
    pts = kp2d[list(group)]
    pts = pts[pts[:, 2] > 0, :2]
    if len(pts) < 2:
        return None
    lo, hi = pts.min(0), pts.max(0)
    side = float((hi - lo).max()) * EXTREME_CROP_MARGIN
    return (((lo + hi) / 2).astype(np.float64), side) if side > 1.0 else None


def crop_transform(center, side: float, out_size: int, rotation_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """(2, 3) affine from image pixels to crop pixels: rotate by ``rotation_deg`` about ``center``, scale the
    square of ``side`` to ``out_size``, mirror when ``flip``. Positive angles turn the content clockwise on
    screen (x right, y down)."""
    k = out_size / side
    t = math.radians(rotation_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) * k
    m = np.concatenate([rot, (out_size / 2 - rot @ np.asarray(center, np.float64))[:, None]], 1)
    if flip:
        m = np.array([[-1.0, 0.0, out_size], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0, 0, 1]])
    return m


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def warp(image: np.ndarray, m: np.ndarray, out_size: int, nearest: bool = False) -> np.ndarray:
    """Resample ``image`` through the crop map ``m`` (continuous pixels, centres at +0.5) with OpenCV, whose
    matrices act on pixel indices: the translation is corrected by ``m·(0.5, 0.5) - 0.5``."""
    import cv2

    idx = m.copy()
    idx[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(image, idx.astype(np.float64), (out_size, out_size), flags=flags,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip


def _rotate_z(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]])


def make_sample(
    image: np.ndarray,
    ann: Annotation,
    out_size: int = HMR2_CROP_SIZE,
    augment: AugmentConfig | None = None,
    rng: np.random.Generator | None = None,
    bbox_shape: tuple[int, int] | None = None,
) -> Sample:
    """Crop ``image`` (H, W, 3) uint8 RGB around ``ann`` into a :class:`Sample` of side ``out_size``.

    ``augment`` None: the plain crop (evaluation). Otherwise jitter as :class:`AugmentConfig` says, drawn
    from ``rng``. ``bbox_shape``: pad the box to this aspect before squaring (HMR 2.0 evaluation)."""
    from scipy.spatial.transform import Rotation

    center = np.asarray(ann.center, np.float64)
    side = square_side(ann.size, bbox_shape)
    annotated = square_side(ann.size)
    rot = 0.0
    flip = False
    color = np.ones(3)
    if augment is not None:
        rng = rng if rng is not None else np.random.default_rng()
        if rng.random() < augment.extreme_crop_rate:
            box = _extreme_box(ann.keypoints_2d, rng)
            if box is not None:
                center, side = box
        side *= 1.0 + float(np.clip(rng.standard_normal(), -1, 1)) * augment.scale_factor
        center = center + np.clip(rng.standard_normal(2), -1, 1) * augment.translation_factor * side
        if rng.random() < augment.rotation_rate:
            rot = float(np.clip(rng.standard_normal(), -2, 2)) * augment.rotation_factor
        flip = bool(rng.random() < augment.flip_rate)
        color = rng.uniform(1 - augment.color_scale, 1 + augment.color_scale, 3)
    m = crop_transform(center, side, out_size, rot, flip)

    crop = warp(image, m, out_size)
    if augment is not None:
        crop = np.clip(crop * color, 0, 255).astype(np.uint8)
    mask = np.ones((out_size, out_size), np.uint8) if ann.mask is None else warp(ann.mask.astype(np.uint8), m, out_size, True)

    kp2d = np.asarray(ann.keypoints_2d, np.float64).copy()
    kp2d[:, :2] = _apply(m, kp2d[:, :2])
    kp3d = np.asarray(ann.keypoints_3d, np.float64).copy()
    r3 = _rotate_z(rot)
    kp3d[:, :3] = kp3d[:, :3] @ r3.T
    go = Rotation.from_rotvec(np.asarray(ann.global_orient, np.float64))
    global_orient = (Rotation.from_matrix(r3) * go).as_rotvec()
    body_pose = np.asarray(ann.body_pose, np.float64)
    if flip:
        perm = list(FLIP_PERMUTATION)
        kp2d, kp3d = kp2d[perm], kp3d[perm]
        kp3d[:, 0] *= -1
        global_orient, body_pose = flip_orient(global_orient), flip_body_pose(body_pose)

    k = out_size / side
    if ann.focal_length is not None:
        focal = np.asarray(ann.focal_length, np.float64) * k
        principal = _apply(m, np.asarray(ann.principal_point, np.float64)[None])[0]
        has_camera = 1.0
    else:
        focal = np.full(2, HMR2_FOCAL_LENGTH * out_size / HMR2_CROP_SIZE)
        principal = np.full(2, out_size / 2)
        has_camera = 0.0
    f32 = np.float32
    return Sample(
        image=crop, mask=mask, keypoints_2d=kp2d.astype(f32), keypoints_3d=kp3d.astype(f32),
        global_orient=global_orient.astype(f32), body_pose=body_pose.astype(f32),
        betas=np.asarray(ann.betas, f32), has_global_orient=float(ann.has_global_orient),
        has_body_pose=float(ann.has_body_pose), has_betas=float(ann.has_betas),
        box_center=center.astype(f32), box_size=float(side), bbox_expand_factor=float(side / annotated), image_size=np.array(image.shape[1::-1], f32),
        focal_length=focal.astype(f32), principal_point=principal.astype(f32), has_camera=has_camera,
        crop_transform=m.astype(f32), flipped=float(flip), dataset=ann.dataset, key=ann.key,
    )  # fmt: skip
