"""HMR 2.0: ViT backbone + SMPL transformer-decoder head + body model, crops in, :class:`MeshOutput` out."""

from __future__ import annotations

import contextlib

import torch

from hmr.body import BodyModel
from hmr.models.backbones.vit import ViT
from hmr.models.heads.smpl_transformer import HeadOutput, SMPLTransformerDecoderHead
from hmr.models.hmr2.config import HMR2Config
from hmr.models.mean_params import MeanParams
from hmr.models.precision import backbone_autocast
from hmr.models.predictor import MeshPredictor


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

    def regress(self, crops: torch.Tensor) -> HeadOutput:
        """The backbone sees the crops' centre columns; the decoder reads out the parameters."""
        cfg = self.config
        left = (cfg.image_size - cfg.backbone.img_size[1]) // 2
        with backbone_autocast(self, crops):
            feats = self.backbone(crops[..., left : left + cfg.backbone.img_size[1]])
        return self.smpl_head(feats.float())
