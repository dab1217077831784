"""Command-line interface: a thin layer over the Python API.

Each subcommand lives in the module that owns its feature, which adds its arguments with
``add_arguments(parser)``; only the module of the command being run is imported (``hmr --version`` and
``hmr --help`` import none).

Errors are one line ``hmr: error: ...`` (the traceback too with ``--debug``), exit status 2; Ctrl-C exits
with 130 and SIGTERM with 143, after the same clean-up (README "Exit codes").
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import traceback

from hmr.config import pop_option_overrides
from hmr.version import __version__

# name -> (module providing add_arguments(parser) and setting args.run, one-line help)
_COMMANDS = {
    "body": ("hmr.body.cli", "body models: inspect one, export to ONNX, calibrate landmarks"),
    "data": ("hmr.apps.data", "datasets: check one, render a synthetic set"),
    "config": ("hmr.apps.config", "the pipeline's settings: show the resolved config"),
    "eval": ("hmr.apps.eval", "score a network or the fitting pipeline on an evaluation set"),
    "demo": ("hmr.apps.demo", "3D people from images, folders, videos or a camera"),
    "train": ("hmr.apps.train", "train a network from a recipe (Lightning, MLflow, resumable)"),
    "ui": ("hmr.apps.ui", "open the MLflow UI on the training and evaluation store"),
    "model": ("hmr.models.cli", "mesh-recovery networks: list, inspect, convert, export to ONNX"),
    "web": ("hmr.apps.web", "a local web page: upload a picture, see its 3D people"),
}
# Actions added to a command's sub-parsers from modules in higher rooms: command -> modules whose
# add_arguments(subparsers) takes the action the command's own add_arguments returns.
_EXTRA_ACTIONS = {"body": ("hmr.apps.calibrate",)}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt so that ``finally`` clean-ups run."""


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Terminated


@contextlib.contextmanager
def _sigterm_raises():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of ``command`` (the others are listed by name and help only)."""
    parser = argparse.ArgumentParser(prog="hmr", description="3D human mesh recovery toolkit")
    parser.add_argument("--version", action="version", version=f"hmr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            actions = importlib.import_module(module).add_arguments(p)
            for extra in _EXTRA_ACTIONS.get(name, ()):
                importlib.import_module(extra).add_arguments(actions)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in _COMMANDS else None)
    argv, option_overrides = pop_option_overrides(argv)
    args = parser.parse_args(argv)
    if option_overrides:  # --section.key=value, for the commands that take config overrides
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join('--' + o for o in option_overrides)}")
        args.overrides = [*args.overrides, *option_overrides]
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        with _sigterm_raises():
            return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("hmr: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("hmr: terminated", file=sys.stderr)
        return 143
    except Exception as err:
        from hmr.apps.errors import error_line

        if args.debug:
            traceback.print_exc()
        print(f"hmr: error: {error_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
