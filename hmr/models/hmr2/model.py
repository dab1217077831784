"""HMR 2.0: ViT backbone + SMPL transformer-decoder head + body model, crops in, :class:`MeshOutput` out."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from hmr.body import BodyModel, KeypointSetUnavailableError
from hmr.geometry import cam_crop_to_full, crop_cam_to_translation, perspective_projection
from hmr.models.backbones.vit import ViT
from hmr.models.heads.smpl_transformer import SMPLTransformerDecoderHead
from hmr.models.hmr2.config import HMR2Config
from hmr.models.mean_params import MeanParams
from hmr.outputs import MeshOutput

_BODY = "body_model."


class HMR2(nn.Module):
    """HMR 2.0 model family (4D-Humans, Project_HMR and other sizes, :mod:`hmr.models.hmr2.config`).

    ``state_dict()`` holds only the network (``backbone.*``, ``smpl_head.*``, the reference's key names);
    the body model is a submodule for ``.to()`` but its (licensed) arrays are never saved with the weights.
    """

    def __init__(
        self, config: HMR2Config, body_model: BodyModel, mean_params: MeanParams | None = None, empty: bool = False
    ):
        """``empty=True`` puts the network's tensors on the meta device (no memory, no initialisation), for
        filling with ``load_state_dict(..., assign=True)`` as the checkpoint loaders do."""
        super().__init__()
        config.validate()
        head = config.head
        if body_model.num_joints != head.num_body_joints + 1:
            raise ValueError(
                f"body model {body_model.name!r} has {body_model.num_joints} joints; this head predicts "
                f"{head.num_body_joints + 1} (SMPL structure)"
            )
        if body_model.num_betas < head.num_betas:
            raise ValueError(
                f"body model {body_model.name!r} has {body_model.num_betas} betas; the head predicts {head.num_betas}"
            )
        missing = [s for s in config.keypoint_sets if s not in body_model.keypoint_set_names]
        if missing:
            raise KeypointSetUnavailableError(
                f"body model {body_model.name!r} lacks keypoint sets {missing} that {config.name} outputs "
                f"(it defines {body_model.keypoint_set_names}); for SMPL add extra19 with "
                "BodyModel.from_file(..., joint_regressor_extra='SMPL_to_J19.pkl')"
            )
        self.config = config
        mean_params = mean_params or MeanParams.from_body_model(body_model, head.num_betas, head.rot6d_layout)
        with torch.device("meta") if empty else contextlib.nullcontext():
            self.backbone = ViT(config.backbone)
            self.smpl_head = SMPLTransformerDecoderHead(head, mean_params)
        self.body_model = body_model
        self.keypoint_names = tuple(n for s in config.keypoint_sets for n in body_model.keypoint_names(s))
        scale = 255.0  # the reference normalises 0..255 pixels with 255 * mean / std
        self.register_buffer("pixel_mean", torch.tensor(config.image_mean).view(1, 3, 1, 1) * scale, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.image_std).view(1, 3, 1, 1) * scale, persistent=False)
        self.register_state_dict_post_hook(_drop_body_model_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_body_model_keys)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) RGB crops with values 0..255 (uint8 or float) -> the network's normalised input."""
        return (pixels.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std

    def forward(
        self,
        crops: torch.Tensor,
        box_center: torch.Tensor | None = None,
        box_size: torch.Tensor | None = None,
        image_size: torch.Tensor | None = None,
        focal_length: torch.Tensor | None = None,
    ) -> MeshOutput:
        """``crops`` (B, 3, S, S) normalised (:meth:`normalize`), S = ``config.image_size`` (256).

        With the crops' boxes, ``box_center`` (B, 2) and ``box_size`` (B,) in pixels (square side) and
        ``image_size`` (B, 2) = (W, H), also fills the full-image fields; ``focal_length`` (B,) pixels
        defaults to HMR 2.0's ``focal / S * max(W, H)``.
        """
        cfg = self.config
        s = cfg.image_size
        if crops.dim() != 4 or crops.shape[1:] != (3, s, s):
            raise ValueError(f"crops have shape {tuple(crops.shape)}; expected (B, 3, {s}, {s}) normalised RGB")
        left = (s - cfg.backbone.img_size[1]) // 2
        feats = self.backbone(crops[..., left : left + cfg.backbone.img_size[1]])
        head = self.smpl_head(feats)
        rot = head.rotmats.float()
        pred_cam = head.pred_cam.float()
        with torch.autocast(crops.device.type, enabled=False):  # skinning stays float32 under mixed precision
            body = self.body_model(global_orient=rot[:, :1], body_pose=rot[:, 1:], betas=head.betas.float())
        kp3d = torch.cat([body.keypoint_set(name) for name in cfg.keypoint_sets], dim=1)
        pred_cam_t = crop_cam_to_translation(pred_cam, cfg.focal_length, s)
        crop_focal = pred_cam.new_full((pred_cam.shape[0],), cfg.focal_length / s)
        out = MeshOutput(
            global_orient=rot[:, :1],
            body_pose=rot[:, 1:],
            betas=head.betas.float(),
            vertices=body.vertices,
            keypoints_3d=kp3d,
            keypoint_names=self.keypoint_names,
            body_model=self.body_model.name,
            pred_cam=pred_cam,
            pred_cam_t=pred_cam_t,
            keypoints_2d=perspective_projection(kp3d, pred_cam_t, crop_focal),
        )
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
        out.keypoints_2d_full = perspective_projection(out.keypoints_3d, out.cam_t_full, focal_length, image_size / 2)


def _drop_body_model_keys(module, state_dict, prefix, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + _BODY)]:
        del state_dict[key]


def _ignore_missing_body_model_keys(module, incompatible_keys) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not (k.startswith(_BODY) or f".{_BODY}" in k)]
