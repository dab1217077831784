"""The Lightning module that trains any registered network: HMR 2.0's losses and mocap discriminator, or
SMPLer's losses for SMPL-Pose (docs/training.md).

Optimisation is manual (as Project_HMR's): one optimiser for the network and, with an adversarial weight, one
for the discriminator, stepped after it on the same batch. Only the network's optimiser advances Lightning's
``global_step``, so ``trainer.max_steps`` counts network updates (4D-Humans counted both, so its "1M steps"
are about 500k updates). Gradient accumulation is done here too (``trainer.accumulate`` batches per update);
since the losses are sums over samples, accumulating k batches of B is one batch of k B.
"""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import torch

from hmr.config import to_dict
from hmr.data import Batch
from hmr.evaluation.evaluate import score_batch
from hmr.geometry import axis_angle_to_matrix
from hmr.models.heads.discriminator import Discriminator
from hmr.training import losses as L_
from hmr.training.config import TrainConfig

log = logging.getLogger("hmr.training")


def family_of(name: str) -> str:
    from hmr.models.registry import MODELS

    if name not in MODELS:
        raise ValueError(f"model.name {name!r} is not a registered network (hmr model list)")
    return MODELS[name].family


def build_network(cfg: TrainConfig, body_model):
    """The network of ``cfg.model``: registered architecture, then ``init`` (a checkpoint of it or of a
    sub-model, e.g. SMPL-Pose stage 2 from the stage-1 baseline: keys with matching names and shapes load) or
    ``backbone_init`` (ViTPose / HRNet weights); random otherwise, with a warning."""
    from hmr.models import create_model, load_backbone_weights, load_hrnet_weights

    m = cfg.model
    model = create_model(m.name, body_model=body_model, mean_params=m.mean_params or None, **m.overrides)
    if m.init:
        init_from(model, m.init)
    elif m.backbone_init:
        if family_of(m.name) == "hmr2":
            load_backbone_weights(model.backbone, m.backbone_init)
        else:
            load_hrnet_weights(model.backbone, m.backbone_init)
    else:
        log.warning("training %s from random weights: no model.init or model.backbone_init given", m.name)
    return model


def init_from(model: torch.nn.Module, path: str) -> int:
    """Load the network keys of a checkpoint (ours: ``.safetensors`` or a training ``.ckpt`` whose keys start
    with ``model.``; SMPLer's ``{'model': ...}``) that match ``model`` by name and shape; returns how many."""
    from hmr.models.weights import checkpoint_state, read_safetensors, torch_load

    state = read_safetensors(path)[0] if str(path).endswith(".safetensors") else checkpoint_state(torch_load(path))
    if not isinstance(state, dict):
        raise ValueError(f"{path}: no weights in this checkpoint")
    if any(k.startswith("model.") for k in state):
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise ValueError(f"{path}: none of its weights fit {type(model).__name__} (names or shapes differ)")
    model.load_state_dict(usable, strict=False)
    log.info("initialised %d of %d tensors from %s", len(usable), len(own), path)
    return len(usable)


class MeshRecoveryModule(L.LightningModule):
    def __init__(self, cfg: TrainConfig, body_model=None):
        super().__init__()
        from hmr.body import load_body_model

        self.cfg = cfg
        # Plain values only, so checkpoints load with torch.load(weights_only=True).
        # ``logger=False``: train() logs the config to MLflow itself, flattened, once.
        self.save_hyperparameters({"config": to_dict(cfg)}, logger=False)
        self.automatic_optimization = False
        body = body_model if body_model is not None else load_body_model(
            cfg.body.smpl or None, joint_regressor_extra=cfg.body.smpl_j19 or None,
            h36m_regressor=cfg.body.h36m_regressor or None)  # fmt: skip
        self.family = family_of(cfg.model.name)
        self.model = build_network(cfg, body)
        self.weights = cfg.loss
        self.discriminator = Discriminator() if self.family == "hmr2" and cfg.loss.adversarial > 0 else None
        self._val_images: list[np.ndarray] = []
        self._val_sums: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------------------------------- optimisers
    def configure_optimizers(self):
        o = self.cfg.optim
        def make(params):
            if o.optimizer == "sgd":
                return torch.optim.SGD(params, lr=o.lr, momentum=0.9, weight_decay=o.weight_decay)
            cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
            return cls(params, lr=o.lr, weight_decay=o.weight_decay)

        opts = [make(self.model.parameters())]
        if self.discriminator is not None:
            opts.append(make(self.discriminator.parameters()))
        return opts

    def _optimizers(self):
        opts = self.optimizers()
        return opts if isinstance(opts, list) else [opts]

    # --------------------------------------------------------------------------------------------- training
    def forward_losses(self, batch: Batch, mocap=None) -> tuple[torch.Tensor, dict[str, torch.Tensor], object]:
        out = self.model(self.model.normalize(batch.images.float()))
        if self.family == "hmr2":
            terms = L_.hmr2_losses(out, batch, self.weights)
        else:
            terms = L_.smpler_losses(out, batch, self.model, self.weights)
        if self.discriminator is not None and mocap is not None:
            # The generator's term must not train the discriminator: its parameters are frozen while it scores.
            self.discriminator.requires_grad_(False)
            terms["adversarial"] = L_.adversarial_generator_loss(self.discriminator(out.body_pose, out.betas[:, :10]))
            self.discriminator.requires_grad_(True)
        return L_.weighted_total(terms, self.weights), terms, out

    def training_step(self, batch, batch_idx):
        batch, mocap = (batch["img"], batch["mocap"]) if isinstance(batch, dict) else (batch, None)
        opts = self._optimizers()
        acc = self.cfg.trainer.accumulate
        total, terms, out = self.forward_losses(batch, mocap)
        self.manual_backward(total)  # the losses are sums over samples: accumulating batches adds them up
        update = (batch_idx + 1) % acc == 0
        if update:
            if self.cfg.optim.grad_clip > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
            opts[0].step()
            opts[0].zero_grad()
        logs = {f"train/loss_{k}": v.detach() for k, v in terms.items()}
        logs["train/loss"] = total.detach()
        if update and self.cfg.optim.grad_clip > 0:
            logs["train/grad_norm"] = grad_norm
        if self.discriminator is not None and mocap is not None:
            pose, betas = mocap
            real = axis_angle_to_matrix(pose.reshape(-1, 23, 3).to(out.body_pose))
            d_loss = self.weights.adversarial * L_.adversarial_discriminator_loss(
                self.discriminator(out.body_pose.detach(), out.betas[:, :10].detach()),
                self.discriminator(real, betas.to(out.betas)), len(batch))  # fmt: skip
            self.manual_backward(d_loss)
            if update:
                # The raw optimiser: stepping the LightningOptimizer would advance global_step a second time.
                opts[1].optimizer.step()
                opts[1].optimizer.zero_grad()
            logs["train/loss_disc"] = d_loss.detach()
        self.log("loss", total.detach(), prog_bar=True, logger=False, batch_size=len(batch))
        if update and self.global_step % self.cfg.trainer.log_every == 0:
            self._log_metrics(logs)
        return total

    def _log_metrics(self, values: dict[str, torch.Tensor | float]) -> None:
        """To the logger at the number of network updates done, from rank 0. Lightning's own step counter for
        logs (batches that stepped) comes back one off after resuming from an epoch-end checkpoint, so the
        step is given explicitly: a resumed run logs each step under the same number as an uninterrupted one."""
        if self.logger is not None and self.global_rank == 0:
            self.logger.log_metrics({k: float(v) for k, v in values.items()}, step=self.global_step)

    # ------------------------------------------------------------------------------------------- validation
    def validation_step(self, batch: Batch, batch_idx, dataloader_idx: int = 0):
        out = self.model(self.model.normalize(batch.images.float()))
        protocol = "synthetic" if bool(batch.has_camera.all()) and bool(batch.has_body_pose.all()) else "hmr2_3d"
        # score_batch poses on the body model's device and scores on the CPU (float64).
        scores = score_batch(protocol, out.to("cpu"), batch.to("cpu"), self.model.body_model)
        for k in ("mpjpe", "pa_mpjpe", "pve", "pa_pve"):
            if k in scores:
                v = scores[k][torch.isfinite(scores[k])]
                total = self._val_sums.setdefault(k, torch.zeros(2, dtype=torch.float64))
                total += torch.tensor([float(v.sum()), float(v.numel())], dtype=torch.float64)
        if batch_idx == 0 and len(self._val_images) < self.cfg.logging.val_images:
            self._val_images += _overlays(self.model, out, batch, self.cfg.logging.val_images - len(self._val_images))

    def on_validation_epoch_start(self):
        self._val_images = []
        self._val_sums: dict[str, torch.Tensor] = {}

    def on_validation_epoch_end(self):
        """Means over all ranks' validation samples (mm), logged at the current step."""
        sums = self._val_sums
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for k in sorted(sums):
                t = sums[k].to(self.device)  # NCCL reduces GPU tensors only
                torch.distributed.all_reduce(t)
                sums[k] = t.cpu()
        self._log_metrics({f"val/{k}": t[0] / t[1] for k, t in sums.items() if t[1] > 0})


def _overlays(model, out, batch: Batch, n: int) -> list[np.ndarray]:
    """Predicted meshes over the first ``n`` crops (the crop camera of HMR 2.0), side by side with the input."""
    from hmr.geometry import Camera
    from hmr.render import RenderUnavailableError, thread_renderer

    s = batch.images.shape[-1]
    try:
        renderer = thread_renderer(s, s)
    except RenderUnavailableError:
        return []
    f = model.config.focal_length / model.config.image_size * s
    cam = Camera(torch.tensor([[f, f]]), torch.tensor([[s / 2, s / 2]]), torch.tensor([[float(s), float(s)]]))
    pics = []
    for i in range(min(n, len(batch))):
        image = batch.images[i].permute(1, 2, 0).cpu().numpy()
        verts = (out.vertices[i] + out.pred_cam_t[i]).detach().float().cpu().numpy()
        pics.append(np.concatenate([image, renderer.overlay(image, verts, model.body_model.faces, cam)], 1))
    return pics
