"""Which keypoints a fit uses: a format's definition on a body model, its reduced model and its limbs (cached)."""

from __future__ import annotations

import weakref

import numpy as np
import torch

from hmr.body import KEYPOINT_SET_NAMES, SMPL_JOINT_NAMES, BodyModel, KeypointSet, KeypointSetUnavailableError
from hmr.body.lbs import ancestor_matrix
from hmr.fitting.priors import HINGES
from hmr.fitting.reduced import ReducedBodyModel

KEYPOINT_FORMATS = ("openpose25", "coco17", "blazepose33")
TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
# Keypoints this close to a joint at rest (metres) are its pivots: they do not tell its rotation.
PIVOT_RADIUS = 0.05
LIMB_CHAINS = (("left_shoulder", "left_elbow", "left_wrist"), ("right_shoulder", "right_elbow", "right_wrist"),
               ("left_hip", "left_knee", "left_ankle"), ("right_hip", "right_knee", "right_ankle"))  # fmt: skip


def keypoint_map(body_model: BodyModel, keypoint_format: str) -> tuple[KeypointSet, np.ndarray]:
    """The body model's definition of ``keypoint_format`` and which of its keypoints it can produce.

    A set the model defines is used as is. Otherwise each keypoint is taken by name from the model's other
    sets (e.g. COCO-17 from an SMPL model's OpenPose-25); keypoints no set names are marked unavailable
    and ignored by the fit.
    """
    if keypoint_format in body_model.keypoint_set_names:
        kp = body_model.keypoint_regressors[keypoint_format].definition()
        return kp, np.ones(kp.num, dtype=bool)
    if keypoint_format not in KEYPOINT_SET_NAMES:
        raise ValueError(
            f"unknown keypoint format {keypoint_format!r}; use one of {list(KEYPOINT_FORMATS)} or a keypoint set "
            f"of the body model ({body_model.keypoint_set_names})"
        )
    names = KEYPOINT_SET_NAMES[keypoint_format]
    sources = [body_model.keypoint_regressors[s].definition() for s in body_model.keypoint_set_names]
    rows, cols, weights = [], [], []
    available = np.zeros(len(names), dtype=bool)
    for k, name in enumerate(names):
        for src in sources:
            if name in src.names:
                sel = src.rows == src.names.index(name)
                rows.append(np.full(sel.sum(), k))
                cols.append(src.cols[sel])
                weights.append(src.weights[sel])
                available[k] = True
                break
    if not all(available[names.index(n)] for n in TORSO):
        raise KeypointSetUnavailableError(
            f"body model {body_model.name!r} cannot produce the {keypoint_format} torso keypoints {list(TORSO)} "
            f"(it defines the keypoint sets {body_model.keypoint_set_names}); add a {keypoint_format!r} keypoint "
            "set to the model"
        )
    kp = KeypointSet(names, np.concatenate(rows), np.concatenate(cols), np.concatenate(weights))
    return kp, available


def _moved_by(body_model: BodyModel, kp: KeypointSet) -> list[set[int]]:
    """Per keypoint, the joints whose rotation moves it: a joint keypoint's strict ancestors, a vertex
    keypoint's main skinning joint and its ancestors."""
    nj = body_model.num_joints
    weights = body_model.weights.cpu().numpy()
    anc = ancestor_matrix(body_model.parents)
    moved_by = [set() for _ in range(kp.num)]
    for r, c in zip(kp.rows.tolist(), kp.cols.tolist(), strict=True):
        j = c if c < nj else int(np.argmax(weights[c - nj]))
        moved_by[r] |= set(np.flatnonzero(anc[j]).tolist()) - ({c} if c < nj else set())
    return moved_by


def observation_map(body_model: BodyModel, kp: KeypointSet, lever: float = PIVOT_RADIUS) -> dict[str, torch.Tensor]:
    """Which keypoints tell a joint's rotation, and which keypoints a keypoint needs to be believed.

    ``moves`` (J, K) bool: joint j's rotation moves keypoint k, which lies at least ``lever`` metres from the
    joint at rest (a keypoint at the pivot, like the knee's for the knee, says nothing about its rotation).
    ``support`` (K, K) bool: keypoint k is believed only when the pivot keypoints of the joints that move it
    are (an ankle needs its hip and knee): a detector extrapolating a body cut by the image border or hidden
    places the whole limb, so an ankle seen without its knee is most often invented.
    """
    moved_by = _moved_by(body_model, kp)
    rest = body_model(body_pose=torch.zeros(1, body_model.num_joints - 1, 3, dtype=body_model.v_template.dtype,
                                            device=body_model.v_template.device), keypoint_sets=())  # fmt: skip
    joints = rest.joints[0].double().cpu()
    points = kp.apply(rest.joints.double().cpu(), rest.vertices.double().cpu())[0]
    dist = torch.cdist(joints, points).numpy()  # (J, K)
    parents = body_model.parents
    nj = body_model.num_joints
    moves = np.zeros((nj, kp.num), dtype=bool)
    pivot = np.zeros((nj, kp.num), dtype=bool)
    for k, joints_k in enumerate(moved_by):
        for j in range(1, nj):
            moves[j, k] = j in joints_k and dist[j, k] >= lever
            pivot[j, k] = dist[j, k] < lever and (j in joints_k or int(parents[j]) in joints_k)
    support = (moves.T.astype(np.int64) @ pivot.astype(np.int64)) > 0  # (K, K): via a joint that moves k
    np.fill_diagonal(support, False)
    return {"moves": torch.as_tensor(moves), "support": torch.as_tensor(support)}


def limbs(body_model: BodyModel, kp: KeypointSet) -> list[dict]:
    """Per limb: its two bones (joint index pairs), its body_pose joints and the keypoints it moves."""
    nj = body_model.num_joints
    anc = ancestor_matrix(body_model.parents)
    moved_by = _moved_by(body_model, kp)
    out = []
    for chain in LIMB_CHAINS:
        root, mid, end = (SMPL_JOINT_NAMES.index(n) for n in chain)
        subtree = [j for j in range(1, nj) if anc[j, root]]
        hinge = next((axis, sign) for name, axis, sign in HINGES if name == chain[1])
        out.append({
            "bones": ((root, mid), (mid, end)),
            "joints": [j - 1 for j in subtree],
            "keypoints": [k for k in range(kp.num) if root in moved_by[k]],
            "keypoints_2d": (kp.names.index(chain[1]), kp.names.index(chain[2])),
            "hinge_axis": torch.eye(3)[hinge[0]] * hinge[1],
        })  # fmt: skip
    return out


# Reduced models per body model, format, device and dtype, valid while the model's keypoint regressors are the
# same objects (a set added or replaced later rebuilds): building one costs ~20 ms, a noticeable share of a lone
# person's fit.
_REDUCED_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def reduced_model(body_model: BodyModel, keypoint_format: str, device: torch.device,
                  dtype: torch.dtype = torch.float32) -> tuple[tuple[str, ...], torch.Tensor, ReducedBodyModel, list[dict], dict]:  # fmt: skip
    """(keypoint names, available mask, ReducedBodyModel, limbs, :func:`observation_map` on ``device``) for
    fitting ``keypoint_format`` (cached)."""
    regressors = tuple(body_model.keypoint_regressors.items())
    per_model = _REDUCED_CACHE.setdefault(body_model, {})
    key = (keypoint_format, str(device), dtype)
    cached = per_model.get(key)
    if cached is None or cached[0] != regressors:  # modules compare by identity
        kp_def, available = keypoint_map(body_model, keypoint_format)
        smpl = tuple(body_model.joint_names) == SMPL_JOINT_NAMES
        cached = per_model[key] = (
            regressors,
            kp_def.names,
            torch.as_tensor(available, device=device),
            ReducedBodyModel(body_model, kp_def).to(device=device, dtype=dtype),
            limbs(body_model, kp_def) if smpl else [],
            {k: v.to(device) for k, v in observation_map(body_model, kp_def).items()},
        )
    return cached[1:]
