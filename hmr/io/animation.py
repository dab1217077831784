"""One person's rig and motion for the animated exports (``hmr.io.gltf``, ``hmr.io.bvh``): numpy only.

The rig is the body model's skeleton with one shape: rest-pose vertices and joints in the body frame
(+y up, +x body-left, +z facing; metres), skin weights and a parent tree. The motion is per-frame local
(parent-relative) rotations, the root's taking the body frame to the OpenCV camera frame, and the root
joint's camera-frame position. ``joint_positions`` is this rig's forward kinematics (the reference the
exported files are checked against); ``sample`` interpolates the motion at frames between keys the way
the files do (slerp of every joint's rotation, linear root position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Animation:
    """One person's skinned rig and motion. Shapes: V vertices, F faces, J joints, T keyed frames.

    vertices (V, 3), rest_joints (J, 3): the person's shape at zero pose, body frame, metres.
    faces (F, 3) int; weights (V, J) skin weights (rows sum to 1); parents (J,) with -1 for joint 0, the
    only root, and ``parents[j] < j`` otherwise; joint_names (J,).
    rotations (T, J, 3, 3) local rotations (``x' = R x``); the root's maps the body frame to the camera frame.
    root_positions (T, 3): the root joint in the camera frame (OpenCV: x right, y down, z forward), metres.
    frames (T,) strictly increasing frame indices: key ``k`` is at ``frames[k] / fps`` seconds, so the
    files of all tracks of a video stay in step with it; frames between keys are interpolated.
    color: RGB in [0, 1] or None. focal_length (2,), principal_point (2,), image_size (2,) = (W, H) pixels:
    the video's pinhole camera (all three or none); the glTF file then holds a camera at the origin.
    name: used for the glTF mesh and node names.
    """

    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    joint_names: tuple[str, ...]
    rest_joints: np.ndarray
    rotations: np.ndarray
    root_positions: np.ndarray
    frames: np.ndarray
    fps: float
    color: np.ndarray | None = None
    focal_length: np.ndarray | None = None
    principal_point: np.ndarray | None = None
    image_size: np.ndarray | None = None
    name: str = "person"

    def __post_init__(self):
        f64 = {k: _finite(k, getattr(self, k)) for k in ("vertices", "weights", "rest_joints", "rotations",
                                                         "root_positions")}  # fmt: skip
        self.vertices, self.weights, self.rest_joints = f64["vertices"], f64["weights"], f64["rest_joints"]
        self.rotations, self.root_positions = f64["rotations"], f64["root_positions"]
        nv = len(self.vertices) if self.vertices.ndim == 2 else -1
        _shape("vertices", self.vertices, (nv, 3))
        self.parents = np.asarray(self.parents).astype(np.int64)
        if self.parents.ndim != 1 or len(self.parents) == 0:
            raise ValueError(f"parents has shape {self.parents.shape}; expected (J,) with J >= 1")
        nj = len(self.parents)
        if self.parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(self.parents) if j):
            raise ValueError("parents must be -1 for joint 0 (the only root) and parents[j] < j for the others; "
                             f"got {self.parents.tolist()}")  # fmt: skip
        self.joint_names = tuple(str(n) for n in self.joint_names)
        if len(self.joint_names) != nj or len(set(self.joint_names)) != nj:
            raise ValueError(f"joint_names must be {nj} distinct names; got {len(self.joint_names)}")
        faces = np.asarray(self.faces)
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise ValueError(f"faces has shape {faces.shape} ({faces.dtype}); expected (F, 3) integers")
        if faces.size and (faces.min() < 0 or faces.max() >= nv):
            raise ValueError(f"faces index vertices outside 0..{nv - 1}")
        self.faces = faces.astype(np.int64)
        _shape("weights", self.weights, (nv, nj))
        if (self.weights < 0).any() or not np.allclose(self.weights.sum(1), 1, atol=1e-3):
            raise ValueError("weights must be non-negative with rows summing to 1")
        _shape("rest_joints", self.rest_joints, (nj, 3))
        nt = len(self.rotations) if self.rotations.ndim == 4 else -1
        _shape("rotations", self.rotations, (nt, nj, 3, 3))
        if nt < 1:
            raise ValueError("rotations: at least one frame is needed")
        err = np.abs(self.rotations @ np.swapaxes(self.rotations, -1, -2) - np.eye(3)).max()
        if err > 1e-3 or (np.linalg.det(self.rotations) < 0).any():
            raise ValueError(f"rotations are not rotation matrices (|R R^T - I| up to {err:.2g}, or reflections)")
        _shape("root_positions", self.root_positions, (nt, 3))
        frames = np.asarray(self.frames)
        if frames.shape != (nt,) or (frames.size and not np.issubdtype(frames.dtype, np.integer)):
            raise ValueError(f"frames has shape {frames.shape} ({frames.dtype}); expected ({nt},) integers")
        if (np.diff(frames) <= 0).any() or frames.min() < 0:
            raise ValueError("frames must be non-negative and strictly increasing")
        self.frames = frames.astype(np.int64)
        self.fps = float(self.fps)
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise ValueError(f"fps must be a positive number; got {self.fps}")
        if self.color is not None:
            self.color = np.clip(_finite("color", self.color), 0, 1)
            _shape("color", self.color, (3,))
        cam = [self.focal_length, self.principal_point, self.image_size]
        if any(c is not None for c in cam):
            if any(c is None for c in cam):
                raise ValueError("focal_length, principal_point and image_size go together (all or none)")
            for key in ("focal_length", "principal_point", "image_size"):
                setattr(self, key, _finite(key, getattr(self, key)))
                _shape(key, getattr(self, key), (2,))
            if (self.focal_length <= 0).any() or (self.image_size <= 0).any():
                raise ValueError("focal_length and image_size must be positive")

    @property
    def num_frames(self) -> int:
        """Frames spanned, first to last key (gaps included): the length of the files' animation."""
        return int(self.frames[-1] - self.frames[0] + 1)

    @property
    def all_frames(self) -> np.ndarray:
        return np.arange(self.frames[0], self.frames[-1] + 1)

    @property
    def has_camera(self) -> bool:
        return self.focal_length is not None

    def sample(self, frames=None) -> tuple[np.ndarray, np.ndarray]:
        """Local rotations (N, J, 3, 3) and root positions (N, 3) at ``frames`` (default: every frame from the
        first key to the last), interpolated between keys: slerp per joint, linear root position."""
        frames = self.all_frames if frames is None else np.atleast_1d(np.asarray(frames, np.float64))
        if (frames < self.frames[0]).any() or (frames > self.frames[-1]).any():
            raise ValueError(f"frames outside the keyed range {self.frames[0]}..{self.frames[-1]}")
        k = np.clip(np.searchsorted(self.frames, frames, side="right") - 1, 0, len(self.frames) - 1)
        k1 = np.minimum(k + 1, len(self.frames) - 1)
        span = np.maximum(self.frames[k1] - self.frames[k], 1)
        t = np.where(k1 > k, (frames - self.frames[k]) / span, 0.0)
        pos = (1 - t)[:, None] * self.root_positions[k] + t[:, None] * self.root_positions[k1]
        rot = self.rotations[k].copy()
        between = t > 0
        if between.any():
            q0 = matrix_to_quaternion(self.rotations[k[between]])
            q1 = matrix_to_quaternion(self.rotations[k1[between]])
            rot[between] = quaternion_to_matrix(slerp(q0, q1, t[between, None]))
        return rot, pos

    def world_transforms(self, frames=None) -> np.ndarray:
        """(N, J, 4, 4) joint transforms in the camera frame at ``frames`` (default: the keys): a rest-pose
        point ``p`` (body frame) moved by joint j alone goes to ``G_j @ [p - rest_joints[j], 1]``."""
        if frames is None:
            rot, pos = self.rotations, self.root_positions
        else:
            rot, pos = self.sample(frames)
        n, nj = rot.shape[:2]
        local = np.zeros((n, nj, 4, 4))
        local[..., :3, :3] = rot
        local[..., 3, 3] = 1
        local[:, 0, :3, 3] = pos
        local[:, 1:, :3, 3] = self.rest_joints[1:] - self.rest_joints[self.parents[1:]]
        world = np.empty_like(local)
        world[:, 0] = local[:, 0]
        for j in range(1, nj):
            world[:, j] = world[:, self.parents[j]] @ local[:, j]
        return world

    def joint_positions(self, frames=None) -> np.ndarray:
        """(N, J, 3) camera-frame joints at ``frames`` (default: the keys), by forward kinematics of the rig."""
        return self.world_transforms(frames)[..., :3, 3]

    def skinned_vertices(self, frames=None, weights: np.ndarray | None = None) -> np.ndarray:
        """(N, V, 3) camera-frame vertices by linear blend skinning (no pose-corrective blend shapes), with
        this rig's weights or the given (V, J) ones."""
        g = self.world_transforms(frames)
        w = self.weights if weights is None else weights
        # Per joint: p -> R (p - J) + t; blended per vertex.
        mats = g[..., :3, :3]
        offs = g[..., :3, 3] - np.einsum("njab,jb->nja", mats, self.rest_joints)
        blended = np.einsum("vj,njab->nvab", w, mats)
        return np.einsum("nvab,vb->nva", blended, self.vertices) + np.einsum("vj,nja->nva", w, offs)


def _finite(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: not a numeric array") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return arr


def _shape(name: str, arr: np.ndarray, shape: tuple) -> None:
    if arr.shape != shape or min(shape, default=0) < 0:
        want = ", ".join("N" if s < 0 else str(s) for s in shape)
        raise ValueError(f"{name} has shape {arr.shape}; expected ({want})")


# ------------------------------------------------------------------------------------------- quaternions
def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (w, x, y, z), ``w >= 0``."""
    m = np.asarray(m, np.float64)
    t = np.stack([1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                  1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]],
                 -1)  # fmt: skip
    # Four candidate formulas, each accurate when its leading component is large; take the best per matrix.
    cand = np.stack([
        np.stack([t[..., 0], m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], t[..., 1], m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], t[..., 2], m[..., 2, 1] + m[..., 1, 2]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2], t[..., 3]], -1),
    ], -2)  # fmt: skip
    best = np.argmax(t, -1)
    q = np.take_along_axis(cand, best[..., None, None], -2)[..., 0, :]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) (w, x, y, z), normalised here -> rotation matrices (..., 3, 3)."""
    q = np.asarray(q, np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)  # fmt: skip


def slerp(q0: np.ndarray, q1: np.ndarray, t) -> np.ndarray:
    """Spherical interpolation of unit quaternions (..., 4) along the shorter arc; ``t`` broadcasts (..., 1)."""
    t = np.asarray(t, np.float64)
    dot = np.sum(q0 * q1, -1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    angle = np.arccos(np.clip(dot, -1, 1))
    sin = np.sin(angle)
    small = sin < 1e-9
    safe = np.where(small, 1, sin)
    a = np.where(small, 1 - t, np.sin((1 - t) * angle) / safe)
    b = np.where(small, t, np.sin(t * angle) / safe)
    out = a * q0 + b * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def continuous_quaternions(q: np.ndarray) -> np.ndarray:
    """Flip signs along axis 0 (time) so that consecutive quaternions lie in the same hemisphere: linear
    interpolation of the components (what Blender does between keys) then takes the short way."""
    q = np.array(q, np.float64)
    for i in range(1, len(q)):
        flip = np.sum(q[i] * q[i - 1], -1) < 0
        q[i][flip] *= -1
    return q
