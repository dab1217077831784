"""``train(cfg)``: a Lightning run with MLflow, atomic checkpoints and exact resume (docs/training.md).

An epoch is one checkpoint interval (``trainer.checkpoint_every`` updates over all ranks). Every epoch's data
order, augmentation and the torch random state are drawn from ``(seed, epoch, rank, worker)``, and a checkpoint
closes every epoch, so a run killed at any moment resumes from its last checkpoint and replays exactly what an
uninterrupted run does from there: the same steps, the same weights (up to float non-associativity across
thread counts). Validation runs every ``ceil(val_every / checkpoint_every)`` epochs.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from hmr import config as config_io
from hmr.data import DatasetLayoutError, MixedDataset, SampleDataset, collate, evaluation_dataset, open_reader
from hmr.data.datasets import stream_seed
from hmr.training.config import TrainConfig

log = logging.getLogger("hmr.training")
MLFLOW_RUN_FILE = "mlflow_run_id.txt"


@dataclass
class RunResult:
    run_dir: Path
    mlflow_run_id: str
    global_step: int
    checkpoint: Path | None
    model_file: Path | None


def _lightning():
    import lightning as L
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    return L, Callback, ModelCheckpoint, TorchCheckpointIO


def atomic_checkpoint_io():
    """Lightning's checkpoint writer, writing to a temporary file that is renamed into place when complete:
    a crash mid-write never leaves a truncated ``.ckpt`` under a final name."""
    _, _, _, TorchCheckpointIO = _lightning()

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            from hmr.io.atomic import atomic_path

            with atomic_path(path) as tmp:
                super().save_checkpoint(checkpoint, tmp, storage_options)

    return AtomicCheckpointIO()


def loadable_checkpoints(ckpt_dir: Path) -> list[Path]:
    """The run's checkpoints, newest first (last.ckpt, then step checkpoints by step)."""
    steps = sorted(ckpt_dir.glob("step_*.ckpt"), key=lambda p: p.stem, reverse=True)
    last = [ckpt_dir / "last.ckpt"] if (ckpt_dir / "last.ckpt").is_file() else []
    return last + steps


def pick_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint that loads; a damaged one is skipped with a warning (the previous one is used)."""
    for path in loadable_checkpoints(ckpt_dir):
        try:
            torch.load(path, map_location="cpu", weights_only=True)
            return path
        except Exception as err:  # truncated or damaged: fall back to the one before
            warnings.warn(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); using the previous one",
                          stacklevel=2)  # fmt: skip
    return None


def _epoch_callback(cfg: TrainConfig):
    _, Callback, _, _ = _lightning()

    class EpochSeeds(Callback):
        """Before each epoch: the datasets' epoch and the torch random state, from (seed, epoch, rank)."""

        def on_train_epoch_start(self, trainer, pl_module):
            epoch = trainer.current_epoch
            torch.manual_seed(stream_seed(cfg.trainer.seed, epoch, trainer.global_rank) % 2**63)
            loaders = trainer.train_dataloader
            for dl in loaders.values() if isinstance(loaders, dict) else [loaders]:  # CombinedLoader: a dict
                if hasattr(dl.dataset, "set_epoch"):
                    dl.dataset.set_epoch(epoch)

    return EpochSeeds()


def _val_image_callback(run_dir: Path):
    _, Callback, _, _ = _lightning()

    class ValImages(Callback):
        """Rendered validation overlays -> PNG artifacts of the MLflow run (``val_images/step_N_i.png``)."""

        def on_validation_epoch_end(self, trainer, pl_module):
            if trainer.global_rank != 0 or not pl_module._val_images or trainer.logger is None:
                return
            from hmr.io.exports import write_png

            out = run_dir / "val_images"
            for i, img in enumerate(pl_module._val_images):
                path = out / f"step_{trainer.global_step:08d}_{i}.png"
                write_png(path, img)
                trainer.logger.experiment.log_artifact(trainer.logger.run_id, str(path), "val_images")

    return ValImages()


class _MocapRows(torch.utils.data.IterableDataset):
    """Random rows of the mocap npz forever (the discriminator's real samples), seeded per epoch."""

    def __init__(self, reader, seed: int):
        self.reader, self.seed, self.epoch = reader, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        import numpy as np

        rng = np.random.default_rng(stream_seed(self.seed, self.epoch, "mocap"))
        while True:
            i = int(rng.integers(len(self.reader)))
            yield tuple(torch.from_numpy(a) for a in self.reader.read(i))


def _world_size(cfg: TrainConfig) -> int:
    env = int(os.environ.get("WORLD_SIZE", "0") or 0)
    if env:
        return env
    devices = cfg.trainer.devices
    if devices.isdigit():
        return int(devices) * cfg.trainer.num_nodes
    return cfg.trainer.num_nodes


def train_loaders(cfg: TrainConfig, adversarial: bool):
    """The image stream (one epoch = one checkpoint interval) and, with the discriminator, the mocap stream."""
    d = cfg.data
    if not d.train:
        raise DatasetLayoutError("data.train names no dataset (e.g. data.train=out/synth, a hmr data synth folder)")
    parts = [
        SampleDataset(open_reader(s, d.root, d.filters), d.image_size, d.augment, shuffle=True, repeat=True,
                      seed=cfg.trainer.seed, shuffle_buffer=d.dataset_shuffle)  # fmt: skip
        for s in d.train
    ]
    per_epoch = cfg.trainer.checkpoint_every * cfg.trainer.accumulate * d.batch_size * _world_size(cfg)
    mix = MixedDataset(parts, [s.weight for s in d.train], per_epoch, cfg.trainer.seed, d.shuffle_buffer)
    images = torch.utils.data.DataLoader(mix, batch_size=d.batch_size, num_workers=d.num_workers, collate_fn=collate,
                                         drop_last=True, persistent_workers=False)  # fmt: skip
    if not adversarial:
        return images
    from hmr.data.npz import MocapReader

    mocap = _MocapRows(MocapReader(os.path.join(os.path.expanduser(d.root), d.mocap) if d.root else d.mocap), cfg.trainer.seed)
    from lightning.pytorch.utilities import CombinedLoader

    rows = torch.utils.data.DataLoader(mocap, batch_size=cfg.optim.mocap_factor * d.batch_size)
    return CombinedLoader({"img": images, "mocap": rows}, mode="min_size")  # the image epoch sets the length


def val_loaders(cfg: TrainConfig):
    loaders = []
    for spec in cfg.data.val:
        ds = evaluation_dataset(spec, cfg.data)
        loaders.append(torch.utils.data.DataLoader(ds, batch_size=cfg.data.batch_size, collate_fn=collate,
                                                   num_workers=min(1, cfg.data.num_workers)))  # fmt: skip
    return loaders


def _precision(cfg: TrainConfig) -> str:
    if cfg.trainer.precision != "auto":
        return cfg.trainer.precision
    gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def train(cfg: TrainConfig, resume: str | os.PathLike | None = None, body_model=None) -> RunResult:
    """Train as ``cfg`` says; ``resume``: a run folder (or its name under ``logging.run_dir``) to continue."""
    from hmr.evaluation.report import tracking_env

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tracking_env():
        return _train(cfg, resume, body_model)


def _train(cfg: TrainConfig, resume: str | os.PathLike | None, body_model) -> RunResult:
    L, _, ModelCheckpoint, _ = _lightning()
    from lightning.pytorch.loggers import MLFlowLogger

    from hmr.evaluation.report import open_store
    from hmr.models import save_model
    from hmr.training.module import MeshRecoveryModule

    if resume is not None:
        run_dir = Path(resume)
        if not run_dir.is_dir():
            run_dir = Path(cfg.logging.run_dir) / str(resume)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{resume}: no such run folder to resume (runs live in {cfg.logging.run_dir}/)")
        cfg = config_io.load(TrainConfig, run_dir / "config.yaml")  # the run's own settings, as it started
    else:
        name = cfg.logging.run_name or f"{cfg.recipe or cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(cfg.logging.run_dir) / name
        if run_dir.exists() and any(run_dir.iterdir()):
            raise FileExistsError(f"{run_dir}: a run of that name exists; resume it with --resume {run_dir}")
    # The data first: a missing dataset stops the run before any model is built or folder made.
    from hmr.training.module import family_of

    adversarial = family_of(cfg.model.name) == "hmr2" and cfg.loss.adversarial > 0 and bool(cfg.data.mocap)
    try:
        train_data = train_loaders(cfg, adversarial)
        val = val_loaders(cfg)
    except DatasetLayoutError as err:
        root = f"data.root={cfg.data.root!r}" if cfg.data.root else "no data.root (paths are relative to here)"
        raise DatasetLayoutError(f"{err}; {root}; where each recipe's data comes from: docs/training.md") from None
    if resume is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_io.save_yaml(cfg, run_dir / "config.yaml")
    ckpt_dir = run_dir / "checkpoints"
    for stale in ckpt_dir.glob(".*.ckpt"):  # the temporary file of a write that a kill interrupted
        stale.unlink()
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    module = MeshRecoveryModule(cfg, body_model)
    if module.discriminator is not None and not cfg.data.mocap:
        log.warning("no data.mocap (4D-Humans' cmu_mocap.npz): training without the adversarial term")
        module.discriminator = None

    uri, artifacts = open_store(cfg.logging.mlflow_uri or None)
    id_file = run_dir / MLFLOW_RUN_FILE
    logger = MLFlowLogger(experiment_name=cfg.logging.experiment, tracking_uri=uri, run_name=run_dir.name,
                          run_id=id_file.read_text().strip() if id_file.is_file() else None,
                          artifact_location=artifacts)  # fmt: skip
    checkpoints = ModelCheckpoint(dirpath=ckpt_dir, filename="step_{step:08d}", monitor="step", mode="max",
                                  save_top_k=cfg.trainer.keep_checkpoints, save_last=True, every_n_epochs=1,
                                  save_on_train_epoch_end=True, auto_insert_metric_name=False)  # fmt: skip
    trainer = L.Trainer(
        max_steps=cfg.trainer.max_steps, accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes, strategy=cfg.trainer.strategy, precision=_precision(cfg), logger=logger,
        callbacks=[checkpoints, _epoch_callback(cfg), _val_image_callback(run_dir)],
        plugins=[atomic_checkpoint_io()], log_every_n_steps=cfg.trainer.log_every,
        check_val_every_n_epoch=max(1, math.ceil(cfg.trainer.val_every / cfg.trainer.checkpoint_every)),
        limit_val_batches=cfg.trainer.val_batches if val else 0, num_sanity_val_steps=0, default_root_dir=run_dir,
        enable_model_summary=False, use_distributed_sampler=False,
    )  # fmt: skip
    ckpt = pick_checkpoint(ckpt_dir) if resume is not None else None
    if resume is not None and ckpt is None:
        log.warning("%s: no readable checkpoint; starting the run from the beginning", run_dir)
    if trainer.global_rank == 0:
        id_file.write_text(logger.run_id + "\n")
        if resume is None:
            logger.log_hyperparams(_flat(config_io.to_dict(cfg)))
            logger.experiment.log_artifact(logger.run_id, str(run_dir / "config.yaml"))
    trainer.fit(module, train_dataloaders=train_data, val_dataloaders=val or None,
                ckpt_path=str(ckpt) if ckpt else None)  # fmt: skip
    if val and trainer.global_step % cfg.trainer.val_every:
        trainer.validate(module, dataloaders=val, verbose=False)  # the final weights are always validated
    model_file = None
    if trainer.global_rank == 0:
        model_file = save_model(module.model, run_dir / "model.safetensors")
        last = ckpt_dir / "last.ckpt"
        for path in (model_file, model_file.with_suffix(".yaml"), last):
            if path.is_file():
                logger.experiment.log_artifact(logger.run_id, str(path), "checkpoints" if path == last else "model")
    return RunResult(run_dir, logger.run_id, trainer.global_step, ckpt_dir / "last.ckpt", model_file)


def _flat(tree: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)[:500]
    return out
