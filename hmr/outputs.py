"""The named output shared by every mesh-recovery method (networks and keypoint fitting)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass
class MeshOutput:
    """Per-person body estimate for a batch of B people. Conventions: docs/conventions.md.

    Body (body-model frame rotated into the camera frame by ``global_orient``):
      global_orient (B,1,3,3) and body_pose (B,J-1,3,3) rotation matrices (parent-relative);
      betas (B,S) shape coefficients; vertices (B,V,3) and keypoints_3d (B,K,3) in metres, camera-frame
      orientation but *without* any camera translation (add ``cam_t_full`` or ``pred_cam_t``).
    Crop camera (networks; None for fitting without a crop):
      pred_cam (B,3) weak perspective [s, tx, ty]; pred_cam_t (B,3) crop-camera translation (metres);
      keypoints_2d (B,K,2) in normalised crop units [-0.5, 0.5].
    Full image (when the crop's box or the image camera is known):
      cam_t_full (B,3) metres; focal_length (B,2) pixels; keypoints_2d_full (B,K,2) pixels.
    keypoint_names: names of the K keypoints (e.g. openpose25 + extra19 = HMR 2.0's 44).
    body_model: name of the body model that produced the mesh.
    joint_observed (B,J) bool, fitting only: whether a keypoint the fit used tells the joint's rotation; the
      others kept their starting rotation (the mean pose in a cold fit). None when unknown (networks).
    """

    global_orient: torch.Tensor
    body_pose: torch.Tensor
    betas: torch.Tensor
    vertices: torch.Tensor
    keypoints_3d: torch.Tensor
    keypoint_names: tuple[str, ...] = ()
    body_model: str = ""
    pred_cam: torch.Tensor | None = None
    pred_cam_t: torch.Tensor | None = None
    keypoints_2d: torch.Tensor | None = None
    cam_t_full: torch.Tensor | None = None
    focal_length: torch.Tensor | None = None
    keypoints_2d_full: torch.Tensor | None = None
    joint_observed: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.betas.shape[0]

    @staticmethod
    def cat(meshes: list[MeshOutput]) -> MeshOutput:
        """Concatenate along the batch; a tensor field missing (None) in any of them is None in the result."""
        first = meshes[0]
        fields = {}
        for f in dataclasses.fields(first):
            vals = [getattr(m, f.name) for m in meshes]
            if isinstance(vals[0], torch.Tensor):
                fields[f.name] = torch.cat(vals) if all(isinstance(v, torch.Tensor) for v in vals) else None
        return dataclasses.replace(first, **fields)

    def detach(self) -> MeshOutput:
        return self._map(lambda t: t.detach())

    def to(self, *args, **kwargs) -> MeshOutput:
        # a dtype given applies to the numbers; masks stay bool
        return self._map(lambda t: t.to(*args, **kwargs) if t.dtype != torch.bool else t.to(*args, **kwargs).bool())

    def __getitem__(self, index) -> MeshOutput:
        """Select people: ``out[i:j]``, ``out[mask]``, ``out[[0, 2]]`` (a single int keeps the batch dim)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return self._map(lambda t: t[index])

    def _map(self, fn) -> MeshOutput:
        return dataclasses.replace(
            self,
            **{
                f.name: fn(getattr(self, f.name))
                for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)
            },
        )
