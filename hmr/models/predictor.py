"""What every model family's predictor shares: the body model it drives (never saved with the weights), the
input normalisation, and the :class:`MeshOutput` it returns from (rotations, betas, weak-perspective camera)."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from hmr.body import BodyModel, BodyModelOutput, KeypointSetUnavailableError
from hmr.geometry import cam_crop_to_full, crop_cam_to_translation, perspective_projection
from hmr.models.heads.smpl_transformer import HeadOutput
from hmr.outputs import MeshOutput

_BODY = "body_model."
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # on [0, 1] pixels
IMAGENET_STD = (0.229, 0.224, 0.225)


class MeshPredictor(nn.Module):
    """Base of the families' models. Subclasses call :meth:`attach_body` once their network exists and
    implement ``regress(crops) -> HeadOutput``: rotations, betas and weak-perspective camera (what the ONNX
    export holds); :meth:`estimate` poses the body model with them. Their config has ``name``, ``image_size``,
    ``image_mean`` and ``image_std`` (on [0, 1] pixels), ``focal_length`` (crop camera, pixels of the crop) and
    ``keypoint_sets``."""

    def attach_body(self, body_model: BodyModel, num_joints: int, num_betas: int) -> None:
        """Check that ``body_model`` fits the network's outputs and keep it as a submodule (for ``.to()``)
        whose arrays ``state_dict()`` leaves out: they may be licensed SMPL data."""
        cfg = self.config
        if body_model.num_joints != num_joints or body_model.num_betas < num_betas:
            raise ValueError(
                f"body model {body_model.name!r} has {body_model.num_joints} joints and {body_model.num_betas} "
                f"betas; {cfg.name} predicts {num_joints} joints (SMPL structure) and {num_betas} betas"
            )
        missing = [s for s in cfg.keypoint_sets if s not in body_model.keypoint_set_names]
        if missing:
            raise KeypointSetUnavailableError(
                f"body model {body_model.name!r} lacks keypoint sets {missing} that {cfg.name} outputs "
                f"(it defines {body_model.keypoint_set_names}); for SMPL add extra19 with "
                "BodyModel.from_file(..., joint_regressor_extra='SMPL_to_J19.pkl')"
            )
        self.body_model = body_model
        self.keypoint_names = tuple(n for s in cfg.keypoint_sets for n in body_model.keypoint_names(s))
        scale = 255.0  # the references normalise 0..255 pixels with 255 * mean / std
        self.register_buffer("pixel_mean", torch.tensor(cfg.image_mean).view(1, 3, 1, 1) * scale, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.image_std).view(1, 3, 1, 1) * scale, persistent=False)
        self.register_state_dict_post_hook(_drop_body_model_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_body_model_keys)

    def forward(
        self,
        crops: torch.Tensor,
        box_center: torch.Tensor | None = None,
        box_size: torch.Tensor | None = None,
        image_size: torch.Tensor | None = None,
        focal_length: torch.Tensor | None = None,
    ) -> MeshOutput:
        """``crops`` (B, 3, S, S) normalised (:meth:`normalize`), S = ``config.image_size``. With the crops' boxes
        the full-image fields are filled too (:meth:`mesh_output`)."""
        self.check_crops(crops)
        est, body = self.estimate(crops)
        return self.mesh_output(est.rotmats, est.betas, est.pred_cam, body, box_center, box_size, image_size,
                                focal_length)  # fmt: skip

    @property
    def regress_reads_body(self) -> bool:
        """Whether :meth:`regress` reads the body model (e.g. its joints), whose arrays an ONNX export then holds."""
        return False

    def regress(self, crops: torch.Tensor) -> HeadOutput:
        """Normalised crops -> (B, J, 3, 3) rotations (root first), (B, S) betas, (B, 3) camera [s, tx, ty]."""
        raise NotImplementedError

    def estimate(self, crops: torch.Tensor) -> tuple[HeadOutput, BodyModelOutput]:
        """:meth:`regress` and the body model posed by its rotations and betas."""
        est = self.regress(crops)
        return est, self.pose_body(est.rotmats, est.betas)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) RGB crops with values 0..255 (uint8 or float) -> the network's normalised input."""
        return (pixels.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std

    def check_crops(self, crops: torch.Tensor) -> None:
        s = self.config.image_size
        if crops.dim() != 4 or crops.shape[1:] != (3, s, s):
            raise ValueError(f"crops have shape {tuple(crops.shape)}; expected (B, 3, {s}, {s}) normalised RGB")

    def pose_body(self, rot: torch.Tensor, betas: torch.Tensor, extra_sets: tuple[str, ...] = ()) -> BodyModelOutput:
        """The body model at (B, J, 3, 3) rotations and (B, S) betas, with the config's keypoint sets and
        ``extra_sets``; skinning stays float32 under autocast."""
        sets = dict.fromkeys((*self.config.keypoint_sets, *extra_sets))
        with _no_autocast(rot.device.type):
            return self.body_model(global_orient=rot[:, :1].float(), body_pose=rot[:, 1:].float(), betas=betas.float(),
                                   keypoint_sets=sets)  # fmt: skip

    def body_joints(self, rot: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """The (B, J, 3) joints of :meth:`pose_body` (the same bits), without skinning the mesh."""
        with _no_autocast(rot.device.type):
            return self.body_model.posed_joints(rot.float(), betas.float())

    def mesh_output(self, rot: torch.Tensor, betas: torch.Tensor, pred_cam: torch.Tensor, body: BodyModelOutput,
                    box_center=None, box_size=None, image_size=None, focal_length=None) -> MeshOutput:  # fmt: skip
        """The documented output (hmr.outputs.MeshOutput): the weak-perspective camera [s, tx, ty] becomes the
        crop translation [tx, ty, 2 f / (S s)] (f = ``config.focal_length``, S = ``config.image_size``) and
        ``keypoints_2d`` its perspective projection at f / S, in normalised crop units [-0.5, 0.5]. With the
        crops' boxes (``box_center`` (B, 2) and ``box_size`` (B,) pixels, ``image_size`` (B, 2) = (W, H)) the
        full-image fields too; ``focal_length`` (B,) pixels defaults to ``f / S * max(W, H)``."""
        cfg = self.config
        rot, betas, pred_cam = rot.float(), betas.float(), pred_cam.float()
        kp3d = torch.cat([body.keypoint_set(name) for name in cfg.keypoint_sets], dim=1)
        pred_cam_t = crop_cam_to_translation(pred_cam, cfg.focal_length, cfg.image_size)
        crop_focal = pred_cam.new_full((pred_cam.shape[0],), cfg.focal_length / cfg.image_size)
        out = MeshOutput(
            global_orient=rot[:, :1], body_pose=rot[:, 1:], betas=betas, vertices=body.vertices, keypoints_3d=kp3d,
            keypoint_names=self.keypoint_names, body_model=self.body_model.name, pred_cam=pred_cam,
            pred_cam_t=pred_cam_t, keypoints_2d=perspective_projection(kp3d, pred_cam_t, crop_focal),  # crop units
        )  # fmt: skip
        if box_center is not None or box_size is not None or image_size is not None:
            self._add_full_image(out, box_center, box_size, image_size, focal_length)
        return out

    def _add_full_image(self, out: MeshOutput, box_center, box_size, image_size, focal_length) -> None:
        if box_center is None or box_size is None or image_size is None:
            raise ValueError("full-image outputs need box_center (B,2), box_size (B,) and image_size (B,2) together")
        b = out.batch_size
        like = out.pred_cam
        box_center, box_size, image_size = (torch.as_tensor(t).to(like) for t in (box_center, box_size, image_size))
        for name, t, shape in (("box_center", box_center, (b, 2)), ("box_size", box_size, (b,)),
                               ("image_size", image_size, (b, 2))):  # fmt: skip
            if t.shape != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}; expected {shape}")
        if focal_length is None:
            focal_length = self.config.focal_length / self.config.image_size * image_size.max(dim=-1).values
        focal_length = torch.as_tensor(focal_length).to(like).expand(b)
        out.cam_t_full = cam_crop_to_full(out.pred_cam, box_center, box_size, image_size, focal_length)
        out.focal_length = focal_length[:, None].expand(b, 2).clone()
        # Full-image pixels, principal point at the image centre.
        out.keypoints_2d_full = perspective_projection(out.keypoints_3d, out.cam_t_full, focal_length, image_size / 2)


def _no_autocast(device_type: str):
    # Entered only when autocast is on: the ONNX export traces without it and needs no autocast node.
    return torch.autocast(device_type, enabled=False) if torch.is_autocast_enabled(device_type) else nullcontext()


def _drop_body_model_keys(module, state_dict, prefix, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + _BODY)]:
        del state_dict[key]


def _ignore_missing_body_model_keys(module, incompatible_keys) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not (k.startswith(_BODY) or f".{_BODY}" in k)]
