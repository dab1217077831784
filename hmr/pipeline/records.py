"""Turning pipeline results into the documented output records (docs/outputs.md): JSON and npz arrays."""

from __future__ import annotations

import numpy as np
import torch

from hmr.body.keypoints import BLAZEPOSE33_NAMES
from hmr.geometry import matrix_to_axis_angle
from hmr.io.exports import SCHEMA_VERSION
from hmr.pipeline.image import FrameResult, PersonResult
from hmr.version import __version__

UNITS = {
    "lengths": "metres",
    "pixels": "image pixels, origin at the top-left corner of the top-left pixel",
    "rotations": "axis-angle (radians) and 3x3 matrices, parent-relative (SMPL convention)",
    "frame": "camera frame, OpenCV: +x right, +y down, +z forward",
}


def _r(x, nd: int = 5):
    """Array -> nested lists rounded to ``nd`` decimals (compact, exact enough for metres and pixels)."""
    return np.round(np.asarray(x, np.float64), nd).tolist()


def body_arrays(p: PersonResult, body_model) -> dict[str, np.ndarray]:
    """Body parameters of one person with a mesh, as numpy (camera frame, translation included where named)."""
    m = p.mesh
    rot = torch.cat([m.global_orient, m.body_pose], dim=1)
    with torch.no_grad():
        joints = body_model.posed_joints(rot, m.betas)[0].cpu()
    rot = rot[0]
    t = m.cam_t_full[0]
    return {
        "global_orient": rot[:1].numpy(),
        "body_pose": rot[1:].numpy(),
        "global_orient_axis_angle": matrix_to_axis_angle(rot[:1]).numpy(),
        "body_pose_axis_angle": matrix_to_axis_angle(rot[1:]).numpy(),
        "betas": m.betas[0].numpy(),
        "cam_t": t.numpy(),
        "vertices": (m.vertices[0] + t).numpy(),
        "joints": (joints + t).numpy(),
        "mesh_keypoints_3d": (m.keypoints_3d[0] + t).numpy(),
        "mesh_keypoints_2d": m.keypoints_2d_full[0].numpy(),
        **({} if m.joint_observed is None else {"joint_observed": m.joint_observed[0].numpy()}),
    }


def reprojection_error(p: PersonResult, min_confidence: float = 0.5) -> float | None:
    """Median pixel distance between the mesh's projected keypoints and the detected landmarks of the same
    names (confident ones only); None without both."""
    if p.mesh is None or p.keypoints is None or p.mesh.keypoints_2d_full is None:
        return None
    idx = [BLAZEPOSE33_NAMES.index(n) for n in p.mesh.keypoint_names if n in BLAZEPOSE33_NAMES]
    names_ok = [n in BLAZEPOSE33_NAMES for n in p.mesh.keypoint_names]
    pred = p.mesh.keypoints_2d_full[0].numpy()[names_ok]
    det = p.keypoints.keypoints_2d[idx]
    vis = p.keypoints.confidence[idx] >= min_confidence
    if not vis.any():
        return None
    return float(np.median(np.linalg.norm(pred[vis] - det[vis], axis=1)))


def person_record(index: int, p: PersonResult, body: dict | None, files: dict | None = None) -> dict:
    """JSON record of one person (keys in docs/outputs.md)."""
    kp = p.keypoints
    rec = {
        "id": index,
        "track_id": p.track_id,
        "status": p.status,
        "box": _r(p.box, 2),
        "score": round(float(p.score), 4),
        "detection": p.detection,
        "keypoints_2d": None if kp is None else _r(np.concatenate([kp.keypoints_2d, kp.confidence[:, None]], 1), 2),
        "keypoints_3d_world": None if kp is None else _r(kp.keypoints_3d, 4),
        "body": None,
        "files": files or {},
    }
    if body is not None:
        err = reprojection_error(p)
        rec["body"] = {
            "global_orient_axis_angle": _r(body["global_orient_axis_angle"][0]),
            "body_pose_axis_angle": _r(body["body_pose_axis_angle"]),
            "global_orient_matrix": _r(body["global_orient"][0]),
            "body_pose_matrix": _r(body["body_pose"]),
            "betas": _r(body["betas"]),
            "cam_t": _r(body["cam_t"]),
            "joints_3d": _r(body["joints"], 4),
            "mesh_keypoint_names": list(p.mesh.keypoint_names),
            "mesh_keypoints_3d": _r(body["mesh_keypoints_3d"], 4),
            "mesh_keypoints_2d": _r(body["mesh_keypoints_2d"], 2),
            "reprojection_error_px": None if err is None else round(err, 2),
            "joint_observed": body["joint_observed"].tolist() if "joint_observed" in body else None,
        }
    return rec


def camera_record(frame: FrameResult) -> dict:
    cam = frame.camera
    return {
        "model": "pinhole, no distortion",
        "focal_length": _r(cam.focal_length[0], 3),
        "principal_point": _r(cam.principal_point[0], 3),
        "image_size": list(frame.image_size),
    }


def frame_record(source: str, kind: str, frame: FrameResult, body_model, people: list[dict], files: dict) -> dict:
    """Top-level JSON of one input."""
    return {
        "schema_version": SCHEMA_VERSION,
        "hmr_version": __version__,
        "input": source,
        "kind": kind,
        "image_size": list(frame.image_size),
        "camera": camera_record(frame),
        "method": frame.method,
        "body_model": frame.body_model,
        "joint_names": list(body_model.joint_names),
        "keypoint_format": "blazepose33",
        "keypoint_names": list(BLAZEPOSE33_NAMES),
        "units": UNITS,
        "people": people,
        "files": files,
    }


def frame_arrays(frame: FrameResult, bodies: list[dict | None], faces: np.ndarray) -> dict[str, np.ndarray]:
    """npz arrays of one image: every person (N) and the ones with a mesh (P, ``person_index``)."""
    n = len(frame.people)
    kp2d = np.full((n, 33, 3), np.nan, np.float32)
    kp3d = np.full((n, 33, 3), np.nan, np.float32)
    for i, p in enumerate(frame.people):
        if p.keypoints is not None:
            kp2d[i] = np.concatenate([p.keypoints.keypoints_2d, p.keypoints.confidence[:, None]], 1)
            kp3d[i] = p.keypoints.keypoints_3d
    out = {
        "boxes": np.array([p.box for p in frame.people], np.float32).reshape(n, 4),
        "scores": np.array([p.score for p in frame.people], np.float32),
        "keypoints_2d": kp2d,
        "keypoints_3d_world": kp3d,
        "focal_length": frame.camera.focal_length[0].numpy(),
        "principal_point": frame.camera.principal_point[0].numpy(),
        "image_size": np.array(frame.image_size, np.int32),
        "body_model": np.array(frame.body_model),
        "faces": np.asarray(faces, np.int32),
    }
    have = [i for i, b in enumerate(bodies) if b is not None]
    out["person_index"] = np.array(have, np.int64)
    if have:
        for key in bodies[have[0]]:
            out[key] = np.stack([bodies[i][key] for i in have]).astype(np.float32)
    return out
