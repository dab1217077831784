"""Pipeline results -> :class:`hmr.io.animation.Animation` for the skinned glTF and BVH exports.

A skinned mesh has one shape: an image person keeps its own betas; a video track uses the mean of its
betas over the frames with a mesh (the smoothed ones by default), and its bones have that shape's rest
offsets. The root joint is put, frame by frame, where the toolkit placed the pelvis (``joints[0]`` of the
frame), so the body stays where the overlays show it; the other joints then differ from the toolkit's
per-frame ones only by the change of shape (``PersonAnimation.joints`` is the rig's own reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hmr.geometry import Camera
from hmr.io.animation import Animation
from hmr.outputs import MeshOutput


@dataclass
class PersonAnimation:
    """One person's ``animation`` with the shape it uses (``betas`` (S,)) and ``joints`` (T, J, 3), the body
    model's own joints of that shape at the keyed frames: ``body_model.posed_joints(rotations, betas)`` plus
    the translation that puts the root at ``animation.root_positions`` (camera frame, metres).
    ``frame_joints`` (T, J, 3): the toolkit's per-frame joints (each frame's own betas), for comparison."""

    track_id: int | None
    animation: Animation
    betas: np.ndarray
    joints: np.ndarray
    frame_joints: np.ndarray


def rest_shape(body_model, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rest-pose (zero pose) vertices (V, 3) and joints (J, 3) of shape ``betas`` (S,), body frame, float64."""
    dev, dt = body_model.v_template.device, body_model.v_template.dtype
    b = torch.as_tensor(np.asarray(betas), dtype=dt, device=dev)[None]
    with torch.no_grad():
        rest = body_model(betas=b, keypoint_sets=())  # zero pose: the joints are the rest joints
    return rest.vertices[0].cpu().double().numpy(), rest.joints[0].cpu().double().numpy()


def _model_joints(body_model, rotations: np.ndarray, betas: np.ndarray, root_positions: np.ndarray) -> np.ndarray:
    dev = body_model.v_template.device
    rot = torch.as_tensor(rotations, dtype=torch.float64)
    b = torch.as_tensor(np.asarray(betas, np.float64))[None].expand(len(rot), -1)
    with torch.no_grad():
        joints = body_model.posed_joints(rot.to(dev), b.to(dev)).cpu().double().numpy()
    return joints - joints[:, :1] + root_positions[:, None]


def _intrinsics(camera: Camera | None) -> dict:
    if camera is None:
        return {}
    return {
        "focal_length": camera.focal_length[0].cpu().double().numpy(),
        "principal_point": camera.principal_point[0].cpu().double().numpy(),
        "image_size": camera.image_size[0].cpu().double().numpy(),
    }


def _person(body_model, track_id, betas, rotations, root_positions, frames, fps, frame_joints, camera, color,
            name) -> PersonAnimation:  # fmt: skip
    vertices, rest_joints = rest_shape(body_model, betas)
    anim = Animation(
        vertices=vertices,
        faces=body_model.faces.cpu().numpy(),
        weights=body_model.weights.cpu().double().numpy(),
        parents=np.asarray(body_model.parents),
        joint_names=body_model.joint_names,
        rest_joints=rest_joints,
        rotations=rotations,
        root_positions=root_positions,
        frames=np.asarray(frames, np.int64),
        fps=fps,
        color=color,
        name=name,
        **_intrinsics(camera),
    )
    joints = _model_joints(body_model, anim.rotations, betas, anim.root_positions)
    return PersonAnimation(track_id, anim, np.asarray(betas, np.float64), joints, frame_joints)


def image_animation(mesh: MeshOutput, body_model, camera: Camera | None = None, color=None, fps: float = 30.0,
                    name: str = "person") -> PersonAnimation:  # fmt: skip
    """One image person (a batch-1 ``MeshOutput`` in the full-image camera, ``PersonResult.mesh``): a
    single-key animation at frame 0 (``fps`` is nominal; it only sets the BVH's frame time)."""
    if mesh.batch_size != 1 or mesh.cam_t_full is None:
        raise ValueError("image_animation needs a batch-1 MeshOutput with cam_t_full (a full-image result)")
    rot = torch.cat([mesh.global_orient, mesh.body_pose], 1)[0].detach().cpu().double().numpy()
    betas = mesh.betas[0].detach().cpu().double().numpy()
    t = mesh.cam_t_full[0].detach().cpu().double().numpy()
    _, rest_joints = rest_shape(body_model, betas)
    root = (rest_joints[0] + t)[None]  # the root joint is not moved by its own rotation
    person = _person(body_model, None, betas, rot[None], root, [0], fps, None, camera, color, name)
    person.frame_joints = person.joints
    return person


def video_animations(rows: list[dict], body_model, fps: float, kind: str = "smoothed", camera: Camera | None = None,
                     colors: dict | None = None) -> dict[int, PersonAnimation]:  # fmt: skip
    """One animation per track from ``VideoSession.rows`` (``kind``: ``"smoothed"`` or ``"raw"`` parameters),
    keyed at the frames where the track has a mesh; tracks without any are left out. ``colors``: optional
    track id -> RGB in [0, 1]."""
    if kind not in ("smoothed", "raw"):
        raise ValueError(f"kind must be 'smoothed' or 'raw'; got {kind!r}")
    tracks: dict[int, list[dict]] = {}
    for r in rows:
        if r[kind] is not None:
            tracks.setdefault(int(r["track_id"]), []).append(r)
    out = {}
    for tid, rs in sorted(tracks.items()):
        rs = sorted(rs, key=lambda r: r["frame"])
        params = [r[kind] for r in rs]
        betas = np.mean([p["betas"] for p in params], 0).astype(np.float64)
        rot = np.stack([p["rotmats"] for p in params]).astype(np.float64)
        joints = np.stack([p["joints"] for p in params]).astype(np.float64)
        color = None if colors is None else colors.get(tid)
        out[tid] = _person(body_model, tid, betas, rot, joints[:, 0], [r["frame"] for r in rs], fps, joints,
                           camera, color, f"track{tid}")  # fmt: skip
    return out
