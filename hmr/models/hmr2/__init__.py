"""The HMR 2.0 family: ViTPose-style ViT backbone + SMPL transformer-decoder head (4D-Humans, Project_HMR)."""

from hmr.models.hmr2 import convert
from hmr.models.hmr2.config import HMR2_MODELS, HMR2Config
from hmr.models.hmr2.model import HMR2
from hmr.models.registry import ModelFamily, register_family

register_family(
    ModelFamily(
        name="hmr2",
        config_class=HMR2Config,
        build=lambda cfg, body_model, mean_params, empty: HMR2(cfg, body_model, mean_params, empty),
        network=convert.network,
        owns=convert.owns,
        convert=convert.convert,
        describe=convert.describe,
        complete_overrides=convert.complete_overrides,
    ),
    HMR2_MODELS,
)

__all__ = ["HMR2", "HMR2Config", "HMR2_MODELS"]
