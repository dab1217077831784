"""Reading ``.npz`` / ``.npy`` files users hand us: never their pickles, one-line errors naming the file."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np


def _open(path: str | os.PathLike, magic: bytes, kind: str) -> Path:
    p = Path(path).expanduser()
    try:
        with open(p, "rb") as f:
            head = f.read(len(magic))
    except OSError as err:
        raise type(err)(f"{p}: cannot read ({err.strerror or err})") from None
    if head != magic:
        what = "an empty file" if not head else "not that format"
        raise ValueError(f"{p}: not a {kind} file ({what})")
    return p


def _pickled(p: Path, err: ValueError, key: str | None = None) -> ValueError:
    where = f" array {key!r}" if key else ""
    if "allow_pickle" in str(err):
        return ValueError(f"{p}:{where} holds Python objects (a pickle, which can run code); refusing to load it")
    return ValueError(f"{p}:{where} damaged array ({err})")


def load_npz(path: str | os.PathLike, skip_objects: bool = False) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive; ``skip_objects`` leaves out (never unpickles) arrays of Python
    objects instead of refusing the file (e.g. the optional ``extra_info`` of HMR 2.0's evaluation files)."""
    p = _open(path, b"PK\x03\x04", ".npz")
    damaged = (zipfile.BadZipFile, zlib.error, EOFError, OSError)
    try:
        data = np.load(p, allow_pickle=False)
    except (*damaged, ValueError) as err:
        raise ValueError(f"{p}: damaged or truncated .npz archive ({err})") from None
    out = {}
    with data:
        for key in data.files:
            try:
                out[key] = data[key]
            except ValueError as err:
                if skip_objects and "allow_pickle" in str(err):
                    continue
                raise _pickled(p, err, key) from None
            except damaged as err:
                raise ValueError(f"{p}: array {key!r} is damaged ({err})") from None
    return out


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """The array of an ``.npy`` file."""
    p = _open(path, b"\x93NUMPY", ".npy")
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as err:
        raise _pickled(p, err) from None
    except (EOFError, OSError) as err:
        raise ValueError(f"{p}: damaged or truncated .npy file ({err})") from None
