"""HMR 2.0: ViT backbone + SMPL transformer-decoder head + body model, crops in, :class:`MeshOutput` out."""

from __future__ import annotations

import contextlib

import torch

from hmr.body import BodyModel
from hmr.models.backbones.vit import ViT
from hmr.models.heads.smpl_transformer import SMPLTransformerDecoderHead
from hmr.models.hmr2.config import HMR2Config
from hmr.models.mean_params import MeanParams
from hmr.models.predictor import MeshPredictor
from hmr.outputs import MeshOutput


class HMR2(MeshPredictor):
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
        self.config = config
        mean_params = mean_params or MeanParams.from_body_model(body_model, head.num_betas, head.rot6d_layout)
        with torch.device("meta") if empty else contextlib.nullcontext():
            self.backbone = ViT(config.backbone)
            self.smpl_head = SMPLTransformerDecoderHead(head, mean_params)
        self.attach_body(body_model, head.num_body_joints + 1, head.num_betas)

    def forward(
        self,
        crops: torch.Tensor,
        box_center: torch.Tensor | None = None,
        box_size: torch.Tensor | None = None,
        image_size: torch.Tensor | None = None,
        focal_length: torch.Tensor | None = None,
    ) -> MeshOutput:
        """``crops`` (B, 3, S, S) normalised (:meth:`normalize`), S = ``config.image_size`` (256); the backbone
        sees the centre columns. Box and camera arguments: :meth:`MeshPredictor.mesh_output` (``focal_length``
        defaults to HMR 2.0's ``5000 / 256 * max(W, H)``)."""
        self.check_crops(crops)
        cfg = self.config
        left = (cfg.image_size - cfg.backbone.img_size[1]) // 2
        head = self.smpl_head(self.backbone(crops[..., left : left + cfg.backbone.img_size[1]]))
        body = self.pose_body(head.rotmats, head.betas)
        return self.mesh_output(head.rotmats, head.betas, head.pred_cam, body, box_center, box_size, image_size,
                                focal_length)  # fmt: skip
