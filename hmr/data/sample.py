"""The one sample schema every dataset reader produces (docs/data.md).

A reader yields :class:`Annotation` records: one person in a full image, in that image's pixels. The
:mod:`hmr.data.augment` step turns an annotation and its image into a :class:`Sample`: a square crop with
everything expressed in the crop. :func:`collate` stacks samples into a :class:`Batch` of tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch

from hmr.body.keypoints import EXTRA19_NAMES, OPENPOSE25_NAMES

NUM_KEYPOINTS = 44  # HMR 2.0's layout: OpenPose BODY_25 then the 19 SPIN extra joints (docs/conventions.md)
KEYPOINT_NAMES = tuple(f"op_{n}" for n in OPENPOSE25_NAMES) + tuple(f"gt_{n}" for n in EXTRA19_NAMES)
PELVIS_INDEX = 39  # the MPII pelvis among the extra joints (HMR 2.0's PELVIS_IND)
NUM_BETAS = 10

# Left/right swap of the 44 keypoints (4D-Humans' image_dataset.py): BODY_25, then the extra joints.
FLIP_PERMUTATION = (
    0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21,
    *(25 + i for i in (5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18)),
)  # fmt: skip

# SPIN/SMPLer's 24 "GT joints" (J24) in the 44 layout: J24 0..18 are the 19 extra joints; 19..23 are
# nose, left eye, right eye, left ear, right ear, which are OpenPose joints 0, 16, 15, 18, 17.
J24_TO_44 = (*range(25, 44), 0, 16, 15, 18, 17)

# SMPL's 23 body joints (SMPL order minus the root) and their mirror images, for flipping a body pose.
_SMPL_BODY_FLIP = (1, 0, 2, 4, 3, 5, 7, 6, 8, 10, 9, 11, 13, 12, 14, 16, 15, 18, 17, 20, 19, 22, 21)


def flip_body_pose(body_pose: np.ndarray) -> np.ndarray:
    """(..., 69) axis-angle body pose of the mirrored body: left/right joints swapped, y and z negated."""
    pose = np.asarray(body_pose).reshape(*np.shape(body_pose)[:-1], 23, 3)[..., _SMPL_BODY_FLIP, :]
    return (pose * np.array([1.0, -1.0, -1.0], dtype=pose.dtype)).reshape(np.shape(body_pose))


def flip_orient(global_orient: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle of F R F with F = diag(-1, 1, 1): the rotation seen in a mirror across x = 0."""
    return np.asarray(global_orient) * np.array([1.0, -1.0, -1.0], dtype=np.asarray(global_orient).dtype)


@dataclass
class Annotation:
    """One person in a full image, as a reader found them. Pixels are the image's (docs/conventions.md).

    keypoints_2d: (44, 3) x, y pixels + confidence (0 = not annotated). keypoints_3d: (44, 4) metres +
    confidence; in the camera frame when the dataset has a camera (``focal_length`` set), otherwise in the
    dataset's own frame (the losses subtract the pelvis). center: (2,) box centre, pixels. size: side of
    the square box, pixels. global_orient (3,), body_pose (69,): axis-angle, camera frame; betas (10,);
    each with a 0/1 ``has_`` flag. focal_length, principal_point: (2,) pixels, or None when unknown.
    mask: (H, W) uint8 instance mask of this person (1 on them), or None.
    """

    keypoints_2d: np.ndarray
    keypoints_3d: np.ndarray
    center: np.ndarray
    size: float
    global_orient: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    body_pose: np.ndarray = field(default_factory=lambda: np.zeros(69, np.float32))
    betas: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BETAS, np.float32))
    has_global_orient: float = 0.0
    has_body_pose: float = 0.0
    has_betas: float = 0.0
    focal_length: np.ndarray | None = None
    principal_point: np.ndarray | None = None
    mask: np.ndarray | None = None
    dataset: str = ""
    key: str = ""


@dataclass
class Sample:
    """One person crop, everything in the crop's pixels (S = the crop side, 256 for HMR 2.0, 224 for
    SMPL-Pose). Built by :func:`hmr.data.augment.make_sample`.

    image: (S, S, 3) uint8 RGB. mask: (S, S) uint8, 1 on the person (all ones when the dataset has none).
    keypoints_2d: (44, 3) crop pixels + confidence. keypoints_3d: (44, 4) metres + confidence, rotated and
    mirrored with the crop. global_orient (3,), body_pose (69,), betas (10,) and their ``has_`` flags.
    box_center (2,), box_size: the crop's square in the original image's pixels; bbox_expand_factor: box_size
    over the larger side of the annotated box (HMR 2.0 scales 2D errors by it, so PCK is relative to the
    annotated box); image_size: (W, H) of the original image. focal_length, principal_point: (2,) the crop's pinhole camera, crop pixels, with
    ``has_camera`` 1 when it is the dataset's true camera (0: the HMR 2.0 default, focal 5000 px at 256,
    principal point at the crop centre). crop_transform: (2, 3) affine, original pixels -> crop pixels.
    flipped: 1 when the crop was mirrored. dataset, key: where it came from.
    """

    image: np.ndarray
    mask: np.ndarray
    keypoints_2d: np.ndarray
    keypoints_3d: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    betas: np.ndarray
    has_global_orient: float
    has_body_pose: float
    has_betas: float
    box_center: np.ndarray
    box_size: float
    bbox_expand_factor: float
    image_size: np.ndarray
    focal_length: np.ndarray
    principal_point: np.ndarray
    has_camera: float
    crop_transform: np.ndarray
    flipped: float
    dataset: str
    key: str


@dataclass
class Batch:
    """Stacked samples: the same fields with a leading batch dimension B as tensors (``images`` (B, 3, S, S)
    uint8, channels first; ``masks`` (B, S, S) uint8; scalars (B,) float32), ``dataset`` and ``key`` as
    lists of strings. Normalise ``images`` with the network's ``normalize`` on its device."""

    images: torch.Tensor
    masks: torch.Tensor
    keypoints_2d: torch.Tensor
    keypoints_3d: torch.Tensor
    global_orient: torch.Tensor
    body_pose: torch.Tensor
    betas: torch.Tensor
    has_global_orient: torch.Tensor
    has_body_pose: torch.Tensor
    has_betas: torch.Tensor
    box_center: torch.Tensor
    box_size: torch.Tensor
    bbox_expand_factor: torch.Tensor
    image_size: torch.Tensor
    focal_length: torch.Tensor
    principal_point: torch.Tensor
    has_camera: torch.Tensor
    crop_transform: torch.Tensor
    flipped: torch.Tensor
    dataset: list[str]
    key: list[str]

    def __len__(self) -> int:
        return len(self.key)

    def normalised_keypoints_2d(self) -> torch.Tensor:
        """(B, 44, 3): the 2D keypoints in HMR 2.0's normalised crop units (``pixels / S - 0.5``), confidence last."""
        kp = self.keypoints_2d.clone()
        kp[..., :2] = kp[..., :2] / self.images.shape[-1] - 0.5
        return kp

    def to(self, *args, **kwargs) -> Batch:
        """The batch with its tensors moved (``Tensor.to`` arguments); strings stay."""
        return Batch(**{f.name: _to(getattr(self, f.name), args, kwargs) for f in fields(self)})

    def pin_memory(self) -> Batch:  # DataLoader(pin_memory=True) calls this on custom batch types
        return Batch(**{f.name: _pin(getattr(self, f.name)) for f in fields(self)})


def _to(value, args, kwargs):
    return value.to(*args, **kwargs) if isinstance(value, torch.Tensor) else value


def _pin(value):
    return value.pin_memory() if isinstance(value, torch.Tensor) else value


_RENAMED = {"image": "images", "mask": "masks"}


def collate(samples: list[Sample]) -> Batch:
    """Stack samples (the ``collate_fn`` of every training and evaluation loader)."""
    if not samples:
        raise ValueError("collate() needs at least one sample")
    out = {}
    for f in fields(Sample):
        values = [getattr(s, f.name) for s in samples]
        if f.name in ("dataset", "key"):
            out[f.name] = list(values)
            continue
        arr = np.stack([np.asarray(v) for v in values])
        if f.name == "image":
            arr = arr.transpose(0, 3, 1, 2)
        elif arr.dtype != np.uint8:
            arr = arr.astype(np.float32)
        out[_RENAMED.get(f.name, f.name)] = torch.from_numpy(np.ascontiguousarray(arr))
    return Batch(**out)
