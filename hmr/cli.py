"""Command-line interface: a thin layer over the Python API.

Each subcommand lives in the module that owns its feature and registers itself through
``add_parser(subparsers)``; the module is imported only when listed in ``_COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import sys

from hmr import __version__

# name -> module providing add_parser(subparsers) and run(args)
_COMMANDS = {
    "body": "hmr.body.cli",
    "demo": "hmr.inference.demo",
    "model": "hmr.models.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hmr", description="3D human mesh recovery toolkit")
    parser.add_argument("--version", action="version", version=f"hmr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as err:
        if args.debug:
            raise
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"hmr: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
