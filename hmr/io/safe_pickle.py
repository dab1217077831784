"""Restricted unpickling for files users hand us (a pickle is code).

Only the classes that SMPL-family ``.pkl`` files, joint-regressor pickles and 4D-Humans ``data.pyd``
annotations contain are allowed: numpy arrays and scalars, scipy sparse matrices, chumpy ``Ch`` objects and
the plain built-in containers (``set``, ``frozenset``, ``list``, ``dict``, ``tuple``, ``slice``, ``complex``).
Python 2 names (``__builtin__``, ``copy_reg``, ...) are mapped to Python 3 ones with the standard library's
``_compat_pickle`` tables, as ``pickle`` itself does for protocol 0-2 files. Neither scipy's pickled
internals nor chumpy are imported: sparse matrices and chumpy objects are rebuilt from their state as plain
numpy arrays; a chumpy expression that holds no array value becomes an :class:`UnreadableValue`.
"""

from __future__ import annotations

import _compat_pickle
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


def _np_frombuffer(*args):
    return np._core.numeric._frombuffer(*args)


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
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("_codecs", "encode"): _encode,
    # Inert built-ins: chumpy's pickled state holds sets (``_dirty_vars``); none of these runs user code.
    **{("builtins", t.__name__): t for t in (object, set, frozenset, list, dict, tuple, slice, complex)},
}
# Sparse matrices are densified; SMPL-X's largest (55 x 10475) is far below this.
MAX_DENSE_ELEMENTS = 10**8
_SPARSE_CLASSES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}


class UnreadableValue:
    """A pickled chumpy expression (not a plain ``Ch`` array): its value needs chumpy's code to compute, so
    it is not read. Loading still succeeds; using the value raises."""

    def __init__(self, cls: str):
        self.cls = cls

    def __repr__(self) -> str:
        return f"UnreadableValue({self.cls})"


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, protocol: int):
        super().__init__(file, encoding="latin1")
        self.protocol = protocol

    def find_class(self, module: str, name: str) -> Any:
        if self.protocol < 3:  # Python 2 names, mapped as pickle's own find_class does
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module.split(".")[0] == "chumpy":
            return type(name, (_Chumpy,), {})
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
        state = getattr(obj, "state", None)
        state = state if isinstance(state, dict) else {}
        x = state.get("x", state.get(b"x"))
        return np.asarray(x) if isinstance(x, np.ndarray) else UnreadableValue(f"chumpy {type(obj).__name__}")
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


def _sparse_to_dense(obj: _Sparse) -> np.ndarray:
    s = obj.state
    shape = tuple(int(n) for n in (s.get("_shape") or s.get("shape")))
    if len(shape) != 2 or min(shape) < 0 or shape[0] * shape[1] > MAX_DENSE_ELEMENTS:
        raise ValueError(f"sparse matrix of shape {shape} (at most {MAX_DENSE_ELEMENTS} elements are read)")
    data = np.asarray(s["data"])
    out = np.zeros(shape, dtype=data.dtype)
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
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise type(err)(f"{path}: cannot read ({err.strerror or err})") from None
    return loads_pickle(data, str(path))


def loads_pickle(data: bytes, name: str) -> Any:
    """:func:`load_pickle` for bytes (e.g. a tar member); ``name`` says where they came from in errors."""
    # PROTO opens protocol 2+ pickles; 0 and 1 have none and come from Python 2.
    protocol = data[1] if len(data) > 1 and data[0] == pickle.PROTO[0] else 0
    try:
        return _to_plain(_RestrictedUnpickler(io.BytesIO(data), protocol).load())
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{name}: {err}") from None
    except Exception as err:  # truncated, not a pickle at all, or a malformed sparse matrix
        raise pickle.UnpicklingError(f"{name}: not a readable pickle ({type(err).__name__}: {err})") from None
