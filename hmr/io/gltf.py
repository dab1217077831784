"""Skinned, animated glTF 2.0 binary (``.glb``) of one person, written by hand (struct + numpy).

Frame: the mesh files' y-up frame (``hmr.io.exports.CAMERA_TO_MESH``: the camera frame turned 180 degrees
about x, the camera at the origin looking along -z), so the files of all people of a video, loaded
together, show the scene as filmed; with intrinsics the file holds that camera (a perspective camera
node at the origin; glTF has no principal point, so an off-centre one is not represented).

Content: the rest-pose mesh (POSITION, NORMAL) in the body frame, a material with the person's colour, a
skin whose joints are nodes named as the body model's joints (inverse bind matrices = the rest joints),
and one animation "motion": every joint's rotation and the root's translation, LINEAR, one key per keyed
frame at ``frame / fps`` seconds (gaps are interpolated by the viewer; slerp for rotations). The nodes'
own transforms are the first key's pose, for viewers that do not play animations.

Skinning: glTF skins with up to 4 influences per JOINTS_n/WEIGHTS_n set; vertices keep their
``max_influences`` largest weights, renormalised (default 8: up to two sets, as many as the model needs;
sorted, so that the first set alone, renormalised as 4-influence viewers do, is the best 4-influence
approximation). glTF has no pose-corrective blend shapes: with a model that has them (SMPL's posedirs)
the file's vertices differ from the toolkit's by those correctives (the bundled model has none); the
joints are exact either way.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from hmr.io.animation import Animation, continuous_quaternions, matrix_to_quaternion
from hmr.io.exports import CAMERA_TO_MESH, write_bytes

_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


def skin_influences(weights: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Each vertex's ``count`` largest weights (V, n), largest first, renormalised, and their joint indices
    (joints (V, n), weights (V, n)); ``n <= count`` is the most any vertex needs. Unused slots have weight 0
    and joint 0 (glTF requires it)."""
    weights = np.asarray(weights, np.float64)
    count = max(1, min(count, int((weights > 1e-7).sum(1).max())))
    idx = np.argsort(-weights, axis=1, kind="stable")[:, :count]
    w = np.take_along_axis(weights, idx, 1)
    w = np.where(w > 1e-7, w, 0.0)
    w /= w.sum(1, keepdims=True)
    return np.where(w > 0, idx, 0), w


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals; (0, 1, 0) for vertices in no (or only degenerate) faces."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(length > 1e-12, n / np.maximum(length, 1e-12), [0.0, 1.0, 0.0])


class _Bin:
    """The BIN chunk and its bufferViews/accessors (one view per accessor, 4-byte aligned)."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, data: np.ndarray, component: int, target: int | None = None, minmax: bool = False) -> int:
        data = np.ascontiguousarray(data)
        raw = data.tobytes()
        view = {"buffer": 0, "byteOffset": self.size, "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        pad = (-len(raw)) % 4
        self.parts += [raw, b"\0" * pad]
        self.size += len(raw) + pad
        width = 1 if data.ndim == 1 else int(np.prod(data.shape[1:]))
        acc = {"bufferView": len(self.views) - 1, "componentType": component, "count": int(len(data)),
               "type": _TYPES[width]}  # fmt: skip
        if minmax:
            flat = data.reshape(len(data), width)
            cast = float if component == _FLOAT else int
            acc["min"] = [cast(x) for x in flat.min(0)]
            acc["max"] = [cast(x) for x in flat.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def glb_bytes(animation: Animation, max_influences: int = 8, generator: str = "hmr") -> bytes:
    """The ``.glb`` file of :func:`write_skinned_glb` as bytes."""
    a = animation
    if not 1 <= max_influences <= 8:
        raise ValueError(f"max_influences must be 1..8 (two JOINTS/WEIGHTS sets); got {max_influences}")
    nj = len(a.parents)
    b = _Bin()
    f32 = np.float32
    attrs = {
        "POSITION": b.add(a.vertices.astype(f32), _FLOAT, _ARRAY_BUFFER, minmax=True),
        "NORMAL": b.add(vertex_normals(a.vertices, a.faces).astype(f32), _FLOAT, _ARRAY_BUFFER),
    }
    joints, weights = skin_influences(a.weights, max_influences)
    jtype, jdtype = (_UBYTE, np.uint8) if nj <= 256 else (_USHORT, np.uint16)
    sets = -(-joints.shape[1] // 4)
    joints = np.pad(joints, ((0, 0), (0, 4 * sets - joints.shape[1])))
    weights = np.pad(weights, ((0, 0), (0, 4 * sets - weights.shape[1])))
    for s in range(sets):
        attrs[f"JOINTS_{s}"] = b.add(joints[:, 4 * s : 4 * s + 4].astype(jdtype), jtype, _ARRAY_BUFFER)
        attrs[f"WEIGHTS_{s}"] = b.add(weights[:, 4 * s : 4 * s + 4].astype(f32), _FLOAT, _ARRAY_BUFFER)
    itype, idtype = (_USHORT, np.uint16) if len(a.vertices) <= 65535 else (_UINT, np.uint32)
    indices = b.add(a.faces.reshape(-1).astype(idtype), itype, _ELEMENT_ARRAY_BUFFER)
    # Inverse bind matrices (column-major): the rest pose has joint j at rest_joints[j], unrotated.
    ibm = np.tile(np.eye(4), (nj, 1, 1))
    ibm[:, :3, 3] = -a.rest_joints
    ibm_acc = b.add(np.swapaxes(ibm, 1, 2).reshape(nj, 16).astype(f32), _FLOAT)

    # Motion in the file frame: the root's rotation and position turned by CAMERA_TO_MESH; the other
    # joints' local rotations and the bone offsets are body-frame quantities and stay as they are.
    rot = a.rotations.copy()
    rot[:, 0] = CAMERA_TO_MESH @ rot[:, 0]
    quat = continuous_quaternions(matrix_to_quaternion(rot))  # (T, J, 4) w, x, y, z
    quat_xyzw = np.roll(quat, -1, axis=-1)
    root_t = a.root_positions @ CAMERA_TO_MESH.T
    offsets = a.rest_joints - a.rest_joints[np.maximum(a.parents, 0)]
    times = b.add((a.frames / a.fps).astype(f32), _FLOAT, minmax=True)
    samplers = [{"input": times, "output": b.add(root_t.astype(f32), _FLOAT), "interpolation": "LINEAR"}]
    samplers += [{"input": times, "output": b.add(quat_xyzw[:, j].astype(f32), _FLOAT), "interpolation": "LINEAR"}
                 for j in range(nj)]  # fmt: skip

    node0 = 1  # node 0 is the skinned mesh; joints follow, then the camera
    nodes = [{"name": a.name, "mesh": 0, "skin": 0}]
    for j in range(nj):
        node = {"name": a.joint_names[j], "rotation": [float(x) for x in quat_xyzw[0, j]],
                "translation": [float(x) for x in (root_t[0] if j == 0 else offsets[j])]}  # fmt: skip
        children = [node0 + c for c in np.flatnonzero(a.parents == j)]
        if children:
            node["children"] = [int(c) for c in children]
        nodes.append(node)
    channels = [{"sampler": 0, "target": {"node": node0, "path": "translation"}}]
    channels += [{"sampler": 1 + j, "target": {"node": node0 + j, "path": "rotation"}} for j in range(nj)]
    color = [0.7, 0.7, 0.7] if a.color is None else [float(c) for c in a.color]
    doc = {
        "asset": {"version": "2.0", "generator": generator},
        "scene": 0,
        "scenes": [{"name": a.name, "nodes": [0, node0]}],
        "nodes": nodes,
        "meshes": [{"name": a.name, "primitives": [{"attributes": attrs, "indices": indices, "material": 0}]}],
        "materials": [{"name": f"{a.name} colour", "pbrMetallicRoughness": {
            "baseColorFactor": [*color, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.7}}],  # fmt: skip
        "skins": [{"name": a.name, "joints": list(range(node0, node0 + nj)), "skeleton": node0,
                   "inverseBindMatrices": ibm_acc}],  # fmt: skip
        "animations": [{"name": "motion", "samplers": samplers, "channels": channels,
                        "extras": {"fps": a.fps, "first_frame": int(a.frames[0]),
                                   "last_frame": int(a.frames[-1]), "keyed_frames": len(a.frames)}}],  # fmt: skip
    }
    if a.has_camera:
        w, h = (float(x) for x in a.image_size)
        # Square pixels assumed (glTF has one field of view): the vertical one from fy.
        doc["cameras"] = [{"name": "camera", "type": "perspective", "perspective": {
            "yfov": float(2 * np.arctan(h / (2 * a.focal_length[1]))), "aspectRatio": w / h, "znear": 0.01}}]  # fmt: skip
        doc["scenes"][0]["nodes"].append(len(nodes))
        nodes.append({"name": "camera", "camera": 0})
    binary = b"".join(b.parts)
    doc["buffers"] = [{"byteLength": len(binary)}]
    doc["bufferViews"] = b.views
    doc["accessors"] = b.accessors
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 4)  # the JSON chunk is padded with spaces, the BIN chunk with zeros
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total), struct.pack("<I4s", len(text), b"JSON"), text,
                     struct.pack("<I4s", len(binary), b"BIN\0"), binary])  # fmt: skip


def write_skinned_glb(path: str | os.PathLike, animation: Animation, max_influences: int = 8,
                      generator: str = "hmr") -> None:  # fmt: skip
    """Write ``animation`` as a skinned, animated ``.glb`` (atomically). ``max_influences`` (1..8) skin
    weights per vertex are kept; 4 fit in one JOINTS_0/WEIGHTS_0 set (the most some viewers read)."""
    write_bytes(path, glb_bytes(animation, max_influences, generator))


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """Split a ``.glb`` into its JSON document and BIN chunk (checks the container's header and lengths)."""
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2 or total != len(data):
        raise ValueError("not a glTF 2.0 binary file (bad header or length)")
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    if jtype != b"JSON":
        raise ValueError("first chunk is not JSON")
    doc = json.loads(data[20 : 20 + jlen])
    rest = 20 + jlen
    binary = b""
    if rest < len(data):
        blen, btype = struct.unpack_from("<I4s", data, rest)
        if btype != b"BIN\0":
            raise ValueError("second chunk is not BIN")
        binary = data[rest + 8 : rest + 8 + blen]
    return doc, binary


def accessor_array(doc: dict, binary: bytes, index: int) -> np.ndarray:
    """Accessor ``index`` of a document from :func:`read_glb` as a numpy array (count, components)."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = {_FLOAT: np.float32, _UBYTE: np.uint8, _USHORT: np.uint16, _UINT: np.uint32}[acc["componentType"]]
    width = {v: k for k, v in _TYPES.items()}[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    arr = np.frombuffer(binary, dtype, acc["count"] * width, start)
    return arr.reshape(acc["count"], width) if width > 1 else arr
