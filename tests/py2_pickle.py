"""Pickles written byte for byte the way Python 2 wrote the official SMPL files (tests only).

Python 3's ``pickle.dumps`` cannot produce them: Python 2's ``str`` is a byte string written as
``(SHORT_)BINSTRING``, numpy 1.x on Python 2 reduces arrays to ``numpy.core.multiarray._reconstruct`` with
the raw data as such a string, and chumpy ``Ch`` / scipy ``csc_matrix`` objects are rebuilt with ``NEWOBJ``
(protocol 2) or ``copy_reg._reconstructor`` (protocols 0-1) from classes that do not exist here. So this
pickler writes those opcodes itself, naming stand-in modules (``chumpy.ch``, ``scipy.sparse.csc``,
``__builtin__``, ``copy_reg``) through :class:`Global` references.
"""

from __future__ import annotations

import io
import pickle
import struct

import numpy as np


class Py2Str(bytes):
    """A Python 2 ``str``."""


class Global:
    """``module.name`` as a pickle names it, whether or not Python 3 has such a thing."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle requires reduce callables to be callable; never called
        raise AssertionError("a Global stand-in is only written, never called")


class Py2Object:
    """An instance of ``cls`` (a :class:`Global`) with ``state``, written as Python 2 wrote new-style objects."""

    def __init__(self, cls: Global, state: dict, style: str = "newobj"):
        self.cls, self.state, self.style = cls, state, style


class Reduce:
    """An arbitrary ``func(*args)`` in the pickle (for malicious payloads)."""

    def __init__(self, func: Global, args: tuple):
        self.func, self.args = func, args


def s(text: str) -> Py2Str:
    return Py2Str(text.encode("latin1"))


def ch(x: np.ndarray, style: str = "newobj") -> Py2Object:
    """A chumpy ``Ch`` holding ``x``, with the state chumpy pickles."""
    state = {
        s("x"): x,
        s("_dirty_vars"): {s("x")},
        s("_itr"): 0,
        s("_depends_on_deps"): {},
        s("_make_dense"): False,
        s("_make_sparse"): False,
    }
    return Py2Object(Global("chumpy.ch", "Ch"), state, style)


def csc(dense: np.ndarray, style: str = "newobj") -> Py2Object:
    """A scipy ``csc_matrix`` of ``dense`` with scipy 0.x's pickled state."""
    dense = np.asarray(dense, np.float64)
    indptr, indices, data = [0], [], []
    for col in dense.T:
        nz = np.flatnonzero(col)
        indices += nz.tolist()
        data += col[nz].tolist()
        indptr.append(len(indices))
    state = {
        s("_shape"): tuple(dense.shape),
        s("indices"): np.asarray(indices, np.int32),
        s("indptr"): np.asarray(indptr, np.int32),
        s("data"): np.asarray(data, np.float64),
        s("format"): s("csc"),
        s("maxprint"): 50,
    }
    return Py2Object(Global("scipy.sparse.csc", "csc_matrix"), state, style)


class Py2Pickler(pickle._Pickler):
    """The pure-Python pickler with Python 2's encodings of strings, numpy arrays and foreign objects."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2str(self, obj: Py2Str) -> None:
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    def save_global_ref(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))

    def save_py2_object(self, obj: Py2Object) -> None:
        if obj.style == "newobj":
            self.save(obj.cls)
            self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
        else:
            self.save(Global("copy_reg", "_reconstructor"))
            self.save((obj.cls, Global("__builtin__", "object"), None))
            self.write(pickle.REDUCE)
        self.memoize(obj)
        self.save(obj.state)
        self.write(pickle.BUILD)

    def save_call(self, obj: Reduce) -> None:
        self.save(obj.func)
        self.save(obj.args)
        self.write(pickle.REDUCE)

    dispatch[Py2Str] = save_py2str
    dispatch[Global] = save_global_ref
    dispatch[Py2Object] = save_py2_object
    dispatch[Reduce] = save_call

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):  # numpy 1.x on Python 2
            arr = np.ascontiguousarray(obj)
            state = (1, arr.shape, arr.dtype, False, Py2Str(arr.tobytes()))
            return Global("numpy.core.multiarray", "_reconstruct"), (Global("numpy", "ndarray"), (0,), s("b")), state
        if isinstance(obj, np.dtype):
            order = s("|" if obj.itemsize == 1 else "<")
            return Global("numpy", "dtype"), (s(obj.str[1:]), 0, 1), (3, order, None, None, None, -1, -1, 0)
        if isinstance(obj, np.generic):
            return Global("numpy.core.multiarray", "scalar"), (obj.dtype, Py2Str(obj.tobytes()))
        return NotImplemented


def dumps(obj, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=protocol, fix_imports=True).dump(obj)
    return buf.getvalue()


def smpl_pickle(arrays: dict[str, np.ndarray], style: str = "newobj", extra: dict | None = None) -> bytes:
    """An SMPL ``.pkl`` as the official files hold it: chumpy ``v_template``/``shapedirs``/``posedirs``/
    ``weights``/``J``, sparse ``J_regressor``/``J_regressor_prior``, Python 2 string keys and values."""
    a = arrays
    model = {
        s("J_regressor_prior"): csc(a["J_regressor"], style),
        s("f"): np.asarray(a["f"], np.uint32),
        s("J_regressor"): csc(a["J_regressor"], style),
        s("kintree_table"): np.asarray(a["kintree_table"], np.int64),
        s("J"): ch(np.asarray(a["J_regressor"]) @ np.asarray(a["v_template"]), style),
        s("weights_prior"): np.asarray(a["weights"]),
        s("weights"): ch(a["weights"], style),
        s("vert_sym_idxs"): np.arange(len(a["v_template"]), dtype=np.int64),
        s("posedirs"): ch(a["posedirs"], style),
        s("pose_training_info"): {s("num_subjects"): 1, s("weight_decay"): np.float64(0.001)},
        s("bs_style"): s("lbs"),
        s("v_template"): ch(a["v_template"], style),
        s("shapedirs"): ch(a["shapedirs"], style),
        "bs_type": "lrotmin",  # some keys were unicode in Python 2 too
    }
    model.update(extra or {})
    return dumps(model, protocol=2 if style == "newobj" else 1)
