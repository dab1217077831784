"""A synthetic body model file with the official SMPL structure and few vertices (tests only)."""

from __future__ import annotations

import numpy as np

from hmr.body.keypoints import SMPL_PARENTS

# Rough SMPL T-pose joint positions (metres, +y up, +x to the body's left).
_JOINTS = np.array([
    [0, 0, 0], [0.06, -0.09, 0], [-0.06, -0.09, 0], [0, 0.11, 0], [0.1, -0.47, 0], [-0.1, -0.47, 0],
    [0, 0.25, 0], [0.09, -0.87, -0.04], [-0.09, -0.87, -0.04], [0, 0.30, 0.02], [0.11, -0.93, 0.08],
    [-0.11, -0.93, 0.08], [0, 0.51, 0], [0.08, 0.42, 0], [-0.08, 0.42, 0], [0, 0.57, 0.05],
    [0.19, 0.45, 0], [-0.19, 0.45, 0], [0.45, 0.43, 0], [-0.45, 0.43, 0], [0.70, 0.43, 0],
    [-0.70, 0.43, 0], [0.78, 0.42, 0], [-0.78, 0.42, 0],
])  # fmt: skip


def synthetic_smpl_arrays(num_vertices: int = 240, num_betas: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays named and shaped as in SMPL's pickle (dense stand-ins for its sparse/chumpy members)."""
    rng = np.random.default_rng(seed)
    nj = 24
    owner = np.arange(num_vertices) % nj
    v_template = _JOINTS[owner] + rng.normal(scale=0.04, size=(num_vertices, 3))
    dist = np.linalg.norm(v_template[:, None] - _JOINTS[None], axis=-1)
    weights = np.exp(-((dist / 0.08) ** 2)) * (dist < np.sort(dist, axis=1)[:, [3]] + 1e-9)
    weights /= weights.sum(1, keepdims=True)
    j_reg = np.zeros((nj, num_vertices))
    for j in range(nj):
        idx = np.flatnonzero(owner == j)
        j_reg[j, idx] = rng.dirichlet(np.ones(len(idx)))
    faces = np.stack([np.arange(num_vertices), np.roll(np.arange(num_vertices), 1),
                      np.roll(np.arange(num_vertices), 2)], axis=1)  # fmt: skip
    kintree = np.stack([np.array(SMPL_PARENTS), np.arange(nj)]).astype(np.int64)
    kintree[0, 0] = 4294967295
    return {
        "v_template": v_template,
        "f": faces.astype(np.uint32),
        "J_regressor": j_reg,
        "weights": weights,
        "shapedirs": rng.normal(scale=0.01, size=(num_vertices, 3, num_betas)),
        "posedirs": rng.normal(scale=0.005, size=(num_vertices, 3, 207)),
        "kintree_table": kintree,
    }
