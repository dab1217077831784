"""``hmr config show``: the resolved pipeline config as YAML (defaults, ``--config FILE``, ``key=value``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hmr import config as config_io


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print the resolved pipeline config (what hmr demo and hmr.predict use)")
    show.add_argument("overrides", nargs="*", metavar="section.key=value", help="settings to change")
    show.add_argument("--config", type=Path, help="a config YAML to start from")
    show.set_defaults(run=run_show)


def run_show(args: argparse.Namespace) -> int:
    from hmr.pipeline import PipelineConfig

    rest, overrides = config_io.split_overrides(args.overrides)
    if rest:
        raise ValueError(f"expected section.key=value settings, got {', '.join(map(repr, rest))}")
    print(config_io.dump(config_io.load(PipelineConfig, args.config, overrides)), end="")
    return 0
