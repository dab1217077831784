"""Where the bundled default body model lives (``hmr-anny-v1``, docs/body_model_format.md)."""

from __future__ import annotations

from pathlib import Path

from hmr.body.errors import BodyModelNotFoundError

DEFAULT_MODEL_NAME = "hmr-anny-v1"
_ASSET = Path(__file__).resolve().parent.parent / "assets" / "body" / f"{DEFAULT_MODEL_NAME.replace('-', '_')}.npz"


def default_model_path() -> Path:
    """Path of the bundled default body model file."""
    if not _ASSET.is_file():
        raise BodyModelNotFoundError(
            f"the bundled default body model is missing ({_ASSET}); reinstall hmr, or rebuild it with "
            f"'python tools/build_default_body.py --out {_ASSET}' from the source repository"
        )
    return _ASSET
