"""Training settings in the toolkit's one config system (``hmr.config``), and the shipped recipes.

A recipe is a YAML file of these sections; ``hmr train --config NAME_OR_FILE [section.key=value ...]`` reads
``hmr/assets/recipes/NAME.yaml`` or the file, then the overrides (docs/training.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmr.data import DataConfig
from hmr.training.losses import LossWeights

RECIPES = Path(__file__).resolve().parent.parent / "assets" / "recipes"


@dataclass
class ModelSection:
    name: str = "hmr2_vit_s"  # a registered network (hmr model list)
    overrides: dict[str, Any] = field(default_factory=dict)  # its config fields, e.g. {backbone: {depth: 4}}
    init: str = ""  # a checkpoint of this network to start from (e.g. SMPL-Pose stage 2 from stage 1)
    backbone_init: str = ""  # ViTPose (.pth) or HRNet (.pth) backbone weights; empty: random, with a warning
    mean_params: str = ""  # smpl_mean_params.npz (default: derived from the body model)


@dataclass
class BodySection:
    smpl: str = ""  # SMPL .pkl/.npz (default: $HMR_SMPL_PATH, else the bundled body model)
    smpl_j19: str = ""  # SMPL_to_J19.pkl (HMR 2.0's 19 extra keypoints with SMPL)
    h36m_regressor: str = ""  # J_regressor_h36m.npy (SMPL-Pose's losses and SMPLer's protocol with SMPL)


@dataclass
class OptimSection:
    optimizer: str = "adamw"  # adamw (4D-Humans), adam (SMPLer), or sgd (momentum 0.9)
    lr: float = 1e-5
    weight_decay: float = 1e-4
    grad_clip: float = 0.0  # max gradient norm; 0: none (4D-Humans: none; Project_HMR: 1.0)
    mocap_factor: int = 2  # discriminator's real samples per image (4D-Humans: NUM_TRAIN_SAMPLES 2)


@dataclass
class TrainerSection:
    max_steps: int = 1000  # optimisation steps of the network
    val_every: int = 500  # validate every this many steps
    checkpoint_every: int = 500  # checkpoint every this many steps (and at the end)
    keep_checkpoints: int = 3  # step checkpoints kept besides last.ckpt
    log_every: int = 10
    accelerator: str = "auto"  # cpu, gpu, auto
    devices: str = "auto"  # a count, a list "0,1", or auto
    num_nodes: int = 1
    strategy: str = "auto"  # auto, ddp (multi-GPU / multi-node), ddp_find_unused_parameters_true ...
    precision: str = "auto"  # auto: bf16-mixed on a GPU that has it, else 32-true
    accumulate: int = 1  # gradient accumulation: batches per optimisation step
    val_batches: int = 8  # validation batches per validation (4D-Humans: 1)
    seed: int = 0


@dataclass
class LoggingSection:
    run_dir: str = "runs"  # runs/<run_name>/ holds checkpoints and the resolved config
    run_name: str = ""  # default: the recipe name and a timestamp
    mlflow_uri: str = ""  # default: the embedded store (mlruns/mlflow.db here, or $MLFLOW_TRACKING_URI)
    experiment: str = "hmr-train"
    val_images: int = 4  # rendered validation overlays logged per validation


@dataclass
class TrainConfig:
    recipe: str = ""  # the recipe's name (for run names and logs)
    model: ModelSection = field(default_factory=ModelSection)
    body: BodySection = field(default_factory=BodySection)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    optim: OptimSection = field(default_factory=OptimSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    logging: LoggingSection = field(default_factory=LoggingSection)

    def validate(self) -> None:
        if self.optim.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optim.optimizer: adam, adamw or sgd, got {self.optim.optimizer!r}")
        for key in ("max_steps", "val_every", "checkpoint_every", "accumulate", "log_every"):
            if getattr(self.trainer, key) < 1:
                raise ValueError(f"trainer.{key} must be at least 1, got {getattr(self.trainer, key)}")


def recipe_path(name_or_file: str | os.PathLike) -> Path:
    """A shipped recipe by name, or a YAML file."""
    p = Path(name_or_file).expanduser()
    if p.is_file():
        return p
    shipped = RECIPES / f"{name_or_file}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(q.stem for q in RECIPES.glob("*.yaml")))
    raise FileNotFoundError(f"{name_or_file}: no such recipe file and not a shipped recipe ({names})")


def load_train_config(name_or_file: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    from hmr import config as config_io

    path = recipe_path(name_or_file)
    cfg = config_io.load(TrainConfig, path, overrides)
    if not cfg.recipe:
        cfg.recipe = path.stem
    return cfg
