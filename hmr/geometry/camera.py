"""Pinhole camera shared by models, fitting and rendering.

Camera frame: OpenCV convention, +x right, +y down, +z forward (into the scene), metres. The camera sits
at the origin; a person is placed in it by a translation ``cam_t``. Pixel coordinates have their origin
at the top-left corner of the top-left pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# HMR 2.0's fixed focal length for a 256-pixel crop (EXTRA.FOCAL_LENGTH).
HMR2_FOCAL_LENGTH = 5000.0
HMR2_CROP_SIZE = 256


@dataclass
class Camera:
    """Batched pinhole intrinsics.

    focal_length: (B, 2) fx, fy in pixels. principal_point: (B, 2) cx, cy in pixels.
    image_size: (B, 2) width, height in pixels.
    """

    focal_length: torch.Tensor
    principal_point: torch.Tensor
    image_size: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.focal_length.shape[0]

    @classmethod
    def full_image(cls, width: float, height: float, focal_length: float | None = None, batch_size: int = 1,
                   dtype: torch.dtype = torch.float32) -> Camera:  # fmt: skip
        """Principal point at the image centre; default focal as HMR 2.0: 5000/256 * max(W, H)."""
        f = HMR2_FOCAL_LENGTH / HMR2_CROP_SIZE * max(width, height) if focal_length is None else focal_length
        return cls(
            torch.full((batch_size, 2), float(f), dtype=dtype),
            torch.tensor([[width / 2, height / 2]], dtype=dtype).repeat(batch_size, 1),
            torch.tensor([[width, height]], dtype=dtype).repeat(batch_size, 1),
        )

    def map(self, fn) -> Camera:
        """The camera with ``fn`` applied to each of its (B, 2) tensors."""
        return Camera(fn(self.focal_length), fn(self.principal_point), fn(self.image_size))

    def to(self, *args, **kwargs) -> Camera:
        return self.map(lambda t: t.to(*args, **kwargs))

    def __getitem__(self, index) -> Camera:
        """Cameras of some batch rows (``cam[2:]``, ``cam[mask]``, ``cam[[0, 2]]``; an int keeps the batch dim)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return self.map(lambda t: t[index])

    def repeat(self, n: int) -> Camera:
        """The batch tiled ``n`` times (rows 0..B-1, then 0..B-1 again, ...)."""
        return self.map(lambda t: t.repeat(n, 1))

    @staticmethod
    def cat(cameras: list[Camera]) -> Camera:
        return Camera(
            *(torch.cat([getattr(c, f) for c in cameras]) for f in ("focal_length", "principal_point", "image_size"))
        )

    def intrinsics(self) -> torch.Tensor:
        """(B, 3, 3) calibration matrix K."""
        k = self.focal_length.new_zeros(self.batch_size, 3, 3)
        k[:, 0, 0], k[:, 1, 1] = self.focal_length[:, 0], self.focal_length[:, 1]
        k[:, :2, 2] = self.principal_point
        k[:, 2, 2] = 1
        return k

    def project(self, points: torch.Tensor, cam_t: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, 3) camera-frame points (+ optional (B, 3) translation) -> (B, N, 2) pixels."""
        return perspective_projection(points, cam_t, self.focal_length, self.principal_point)


def perspective_projection(
    points: torch.Tensor,
    translation: torch.Tensor | None,
    focal_length: torch.Tensor,
    principal_point: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pinhole projection of (B, N, 3) points. ``focal_length`` (B, 2) or (B,); ``principal_point`` (B, 2)."""
    if translation is not None:
        points = points + translation[:, None]
    if focal_length.dim() == 1:
        focal_length = focal_length[:, None].expand(-1, 2)
    xy = points[..., :2] / points[..., 2:3] * focal_length[:, None]
    return xy if principal_point is None else xy + principal_point[:, None]


def weak_perspective_projection(points: torch.Tensor, pred_cam: torch.Tensor) -> torch.Tensor:
    """HMR weak perspective: ``s * (X + [tx, ty])`` in [-1, 1] crop units; ``pred_cam`` = (B, 3) [s, tx, ty]."""
    return pred_cam[:, None, :1] * (points[..., :2] + pred_cam[:, None, 1:])


def crop_cam_to_translation(pred_cam: torch.Tensor, focal_length: float = HMR2_FOCAL_LENGTH,
                            crop_size: int = HMR2_CROP_SIZE) -> torch.Tensor:  # fmt: skip
    """Weak-perspective [s, tx, ty] -> crop-camera translation [tx, ty, 2 f / (crop_size s)] (HMR 2.0)."""
    s, tx, ty = pred_cam.unbind(-1)
    return torch.stack([tx, ty, 2 * focal_length / (crop_size * s + 1e-9)], dim=-1)


def cam_crop_to_full(
    pred_cam: torch.Tensor,
    box_center: torch.Tensor,
    box_size: torch.Tensor,
    image_size: torch.Tensor,
    focal_length: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weak-perspective crop camera -> translation for the full-image camera (HMR 2.0 ``cam_crop_to_full``).

    ``box_center`` (B, 2) and ``box_size`` (B,) in pixels (square crop side); ``image_size`` (B, 2) = (W, H);
    ``focal_length`` (B,) pixels, default 5000/256 * max(W, H). Principal point at the image centre.
    """
    if focal_length is None:
        focal_length = HMR2_FOCAL_LENGTH / HMR2_CROP_SIZE * image_size.max(dim=-1).values
    s, tx, ty = pred_cam.unbind(-1)
    bs = box_size * s + 1e-9
    w, h = image_size.unbind(-1)
    cx, cy = box_center.unbind(-1)
    return torch.stack([tx + 2 * (cx - w / 2) / bs, ty + 2 * (cy - h / 2) / bs, 2 * focal_length / bs], dim=-1)
