"""Skeleton edges of the toolkit's keypoint sets and 2D keypoint drawing (OpenCV, antialiased)."""

from __future__ import annotations

import numpy as np

from hmr.body.keypoints import KEYPOINT_SET_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS
from hmr.render.renderer import _rgb01, _to_numpy


def _chains(*chains: str) -> tuple[tuple[str, str], ...]:
    """Edges from chains written as "a-b-c" (a-b, b-c)."""
    edges = []
    for chain in chains:
        names = chain.split("-")
        edges += list(zip(names[:-1], names[1:], strict=True))
    return tuple(edges)


def _mirror(*chains: str) -> tuple[str, ...]:
    """Each chain of "L_" names for the left side and the right side."""
    return tuple(c.replace("L_", side) for c in chains for side in ("left_", "right_"))


# Edges by keypoint name; each set's names are in hmr.body.KEYPOINT_SET_NAMES. COCO's follow the
# dataset's own skeleton (ears join the shoulders); BlazePose's eyes-nose-ears and mouth are drawn apart from the body, as
# MediaPipe does.
SKELETON_EDGES: dict[str, tuple[tuple[str, str], ...]] = {
    "openpose25": _chains(
        "nose-neck-mid_hip",
        *_mirror(
            "neck-L_shoulder-L_elbow-L_wrist",
            "mid_hip-L_hip-L_knee-L_ankle-L_heel",
            "L_ankle-L_big_toe-L_small_toe",
            "nose-L_eye-L_ear",
        ),
    ),  # fmt: skip
    "coco17": _chains(
        "left_shoulder-right_shoulder",
        "left_hip-right_hip",
        "left_eye-right_eye",
        *_mirror("L_shoulder-L_elbow-L_wrist", "L_shoulder-L_hip-L_knee-L_ankle", "nose-L_eye-L_ear-L_shoulder"),
    ),  # fmt: skip
    "blazepose33": _chains(
        "left_shoulder-right_shoulder",
        "left_hip-right_hip",
        "mouth_left-mouth_right",
        *_mirror(
            "nose-L_eye_inner-L_eye-L_eye_outer-L_ear",
            "L_shoulder-L_elbow-L_wrist-L_pinky-L_index-L_wrist",
            "L_wrist-L_thumb",
            "L_shoulder-L_hip-L_knee-L_ankle-L_heel-L_foot_index-L_ankle",
        ),
    ),  # fmt: skip
    "h36m17": _chains(
        "pelvis-spine-thorax-neck_nose-head",
        *_mirror("pelvis-L_hip-L_knee-L_ankle", "thorax-L_shoulder-L_elbow-L_wrist"),
    ),  # fmt: skip
    "extra19": _chains(
        "pelvis_mpii-spine_h36m-thorax_mpii-neck_lsp-jaw_h36m-head_h36m-head_top_lsp",
        *_mirror("pelvis_mpii-L_hip-L_knee-L_ankle", "thorax_mpii-L_shoulder-L_elbow-L_wrist"),
    ),  # fmt: skip
    "smpl24": tuple((SMPL_JOINT_NAMES[p], SMPL_JOINT_NAMES[j]) for j, p in enumerate(SMPL_PARENTS) if p >= 0),
}
_NAMES = {**KEYPOINT_SET_NAMES, "smpl24": SMPL_JOINT_NAMES}

# Limb colours (RGB) by side, as seen in the picture: the person's left, right, and the midline.
SIDE_COLORS = {"left": (40, 150, 255), "right": (255, 110, 40), "center": (60, 210, 90)}


def skeleton_edges(keypoint_set: str) -> np.ndarray:
    """(E, 2) keypoint indices of the bones of ``keypoint_set`` (a name in ``SKELETON_EDGES``)."""
    if keypoint_set not in SKELETON_EDGES:
        raise ValueError(f"no skeleton for keypoint set {keypoint_set!r}; known: {', '.join(SKELETON_EDGES)}")
    index = {n: i for i, n in enumerate(_NAMES[keypoint_set])}
    return np.array([(index[a], index[b]) for a, b in SKELETON_EDGES[keypoint_set]], np.int64)


def _side(name: str) -> str:
    return "left" if name.startswith("left_") else "right" if name.startswith("right_") else "center"


def draw_keypoints(image: np.ndarray, keypoints, keypoint_set: str = "openpose25", *, threshold: float = 0.3,
                   color=None, radius: int | None = None, thickness: int | None = None) -> np.ndarray:  # fmt: skip
    """Draw skeletons on a copy of an RGB uint8 image (``keypoint_set``: a name in ``SKELETON_EDGES``).

    keypoints: (K, 2) pixels, (K, 3) pixels + confidence, or (N, K, 2|3) for N people; K must match
    ``keypoint_set``. Points and bones with confidence below ``threshold`` are left out. color: None
    colours bones by side (``SIDE_COLORS``), or one RGB for all people, or a list with one per person
    (floats in [0, 1] or integers in [0, 255], e.g. ``DEFAULT_PALETTE`` entries to match the meshes).
    radius/thickness default to ~1/200 of the image's smaller side.
    """
    import cv2

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be an RGB uint8 (H, W, 3) array, got {img.dtype} {img.shape}")
    edges, names = skeleton_edges(keypoint_set), _NAMES[keypoint_set]
    kp = _to_numpy(keypoints).astype(np.float64)
    kp = kp[None] if kp.ndim == 2 else kp
    if kp.ndim != 3 or kp.shape[1] != len(names) or kp.shape[2] not in (2, 3):
        raise ValueError(f"keypoints for {keypoint_set!r} must be ({len(names)}, 2|3) or (N, {len(names)}, 2|3), "
                         f"got {tuple(np.shape(keypoints))}")  # fmt: skip
    if color is None or np.ndim(color) == 1:
        colors = [color] * len(kp)
    elif len(color) == len(kp):
        colors = list(color)
    else:
        raise ValueError(f"color: give one RGB or one per person ({len(kp)}), got {len(color)}")
    colors = [None if c is None else tuple(int(round(x)) for x in _rgb01(c) * 255) for c in colors]
    scale = min(img.shape[:2]) / 200
    radius = max(int(round(scale * 1.2)), 1) if radius is None else radius
    thickness = max(int(round(scale)), 1) if thickness is None else thickness
    out = np.ascontiguousarray(img.copy())
    shift = 4  # sub-pixel precision for cv2 (coordinates in 1/16 px)
    for person, person_color in zip(kp, colors, strict=True):
        ok = np.isfinite(person[:, :2]).all(1)
        if person.shape[1] == 3:
            ok &= person[:, 2] >= threshold
        pts = np.round(np.nan_to_num(person[:, :2]) * (1 << shift)).astype(np.int64)
        for a, b in edges:
            if ok[a] and ok[b]:
                c = person_color if person_color is not None else SIDE_COLORS[_side(names[b])]
                cv2.line(out, tuple(map(int, pts[a])), tuple(map(int, pts[b])), c, thickness, cv2.LINE_AA, shift)  # fmt: skip
        for i in np.flatnonzero(ok):
            c = person_color if person_color is not None else SIDE_COLORS[_side(names[i])]
            center = tuple(map(int, pts[i]))
            cv2.circle(out, center, radius << shift, c, -1, cv2.LINE_AA, shift)
            cv2.circle(out, center, radius << shift, (255, 255, 255), max(thickness // 2, 1), cv2.LINE_AA, shift)
    return out
