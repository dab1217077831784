"""``hmr train --config RECIPE [section.key=value ...]``: train a network (docs/training.md)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hmr.training.config import RECIPES

    names = ", ".join(sorted(q.stem for q in RECIPES.glob("*.yaml")))
    p.add_argument("--config", required=True, help=f"a recipe name ({names}) or a recipe YAML file")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="settings to change, e.g. data.train=out/synth trainer.max_steps=100")  # fmt: skip
    p.add_argument("--resume", metavar="RUN", help="continue this run (its folder, or its name under logging.run_dir)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hmr import config as config_io
    from hmr.training.config import load_train_config

    rest, overrides = config_io.split_overrides(args.overrides)
    if rest:
        raise ValueError(f"expected section.key=value settings, got {', '.join(map(repr, rest))}")
    cfg = load_train_config(args.config, overrides)
    if args.print_config:
        print(config_io.dump(cfg), end="")
        return 0
    from hmr.training.run import train

    result = train(cfg, resume=args.resume)
    print(f"run {result.run_dir}: {result.global_step} steps; model {result.model_file}; mlflow run {result.mlflow_run_id}")
    return 0
