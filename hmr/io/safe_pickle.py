"""Restricted unpickling for files users hand us (a pickle is code).

Only the classes that SMPL-family ``.pkl`` files and joint-regressor pickles contain are allowed:
numpy arrays and scalars, scipy sparse matrices and chumpy ``Ch`` objects. Neither scipy's pickled
internals nor chumpy are imported: sparse matrices and chumpy objects are rebuilt from their state
as plain numpy arrays.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something outside the allow-list."""


class _StateHolder:
    """Stand-in for an allowed foreign class: keeps the pickled state, runs nothing."""

    kind = "object"

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Chumpy(_StateHolder):
    kind = "chumpy"


class _Sparse(_StateHolder):
    kind = "sparse"


def _np_reconstruct(*args):
    return np._core.multiarray._reconstruct(*args)


def _np_scalar(*args):
    return np._core.multiarray.scalar(*args)


def _encode(text, encoding="latin1"):
    import codecs

    return codecs.encode(text, encoding)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("builtins", "object"): object,
    ("_codecs", "encode"): _encode,
}
_SPARSE_CLASSES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module.split(".")[0] == "chumpy":
            return _Chumpy
        if module.startswith("scipy.sparse") and name in _SPARSE_CLASSES:
            return type(name, (_Sparse,), {"fmt": name[:3]})
        raise UnsafePickleError(
            f"refusing to load {module}.{name} from a pickle: only numpy arrays, scipy sparse matrices and "
            "chumpy arrays are allowed (a pickle can run code; convert the file to .npz if it is yours)"
        )


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, _Sparse):
        return _sparse_to_dense(obj)
    if isinstance(obj, _Chumpy):
        state = obj.state if isinstance(obj.state, dict) else {}
        if "x" not in state:
            raise UnsafePickleError(
                "unsupported chumpy object in pickle (no array value 'x'); convert the file to .npz"
            )
        return np.asarray(state["x"])
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


def _sparse_to_dense(obj: _Sparse) -> np.ndarray:
    s = obj.state
    shape = tuple(s.get("_shape") or s.get("shape"))
    out = np.zeros(shape, dtype=np.asarray(s["data"]).dtype)
    data = np.asarray(s["data"])
    if obj.fmt == "coo":
        np.add.at(out, (np.asarray(s["row"]), np.asarray(s["col"])), data)
        return out
    indptr, indices = np.asarray(s["indptr"]), np.asarray(s["indices"])
    major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    rows, cols = (indices, major) if obj.fmt == "csc" else (major, indices)
    np.add.at(out, (rows, cols), data)
    return out


def load_pickle(path: str | Path) -> Any:
    """Load a pickle through the allow-list; sparse and chumpy values come back as numpy arrays."""
    data = Path(path).read_bytes()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: {err}") from None
    except Exception as err:  # truncated or not a pickle at all
        raise pickle.UnpicklingError(f"{path}: not a readable pickle ({err})") from None
    return _to_plain(obj)
