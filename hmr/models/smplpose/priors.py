"""SMPL-Pose's two additions to SMPLer (docs/models.md, smpler-facts.md section 6), both gated: with every gate
at zero they add exact zeros, so the model computes what SMPLer computes.

* :class:`KinematicGraphBias` (adaptive graph attention): a per-head bias on the self-attention among the 26
  tokens (24 joints, shape, camera) from the hop distance in SMPL's kinematic tree, plus the log of a learned
  adjacency (softmax of ReLU of two low-rank node embeddings, as Graph WaveNet's adaptive adjacency).
* :class:`JointTextPrior` (language prior): a fixed sentence embedding of a description of each joint
  (all-MiniLM-L6-v2, precomputed by ``tools/embed_joint_descriptions.py`` into
  ``hmr/assets/models/smplpose_joint_text.npz``), projected and added to the joint tokens' position embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hmr.body import SMPL_JOINT_NAMES, SMPL_PARENTS
from hmr.io.arrays import load_npz

JOINT_TEXT_PATH = Path(__file__).resolve().parent.parent.parent / "assets" / "models" / "smplpose_joint_text.npz"
TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Plain-language names and body regions of SMPL's joints, without the side (added from the name).
_READABLE = {
    "pelvis": ("pelvis", "hips"), "hip": ("hip joint", "leg"), "spine1": ("lower spine", "torso"),
    "knee": ("knee", "leg"), "spine2": ("middle spine", "torso"), "ankle": ("ankle", "leg"),
    "spine3": ("upper spine at the chest", "torso"), "foot": ("foot and toes", "leg"), "neck": ("neck", "upper body"),
    "collar": ("collarbone", "shoulder girdle"), "head": ("head", "head"), "shoulder": ("shoulder", "arm"),
    "elbow": ("elbow", "arm"), "wrist": ("wrist", "arm"), "hand": ("hand and fingers", "arm"),
}  # fmt: skip


def _readable(name: str) -> tuple[str, str, str]:
    """SMPL joint name -> (side, plain name with the side, region with the side)."""
    side, _, part = name.partition("_") if name.startswith(("left_", "right_")) else ("", "", name)
    plain, region = _READABLE[part]
    if not side:
        return "", plain, region
    return side, f"{side} {plain}", f"{side} {region}"


def joint_descriptions() -> tuple[str, ...]:
    """One sentence per SMPL joint naming its side, region, parent and children: left/right twins differ
    wherever the side is named. Their embeddings stay close (cosine about 0.98, the body-part noun dominates);
    the learned position embeddings tell twins apart, the prior adds what the words share."""
    out = []
    for j, name in enumerate(SMPL_JOINT_NAMES):
        side, plain, region = _readable(name)
        where = f"on the {side} side of the body" if side else "on the centre line of the body"
        parent = (f"It hangs from the {_readable(SMPL_JOINT_NAMES[SMPL_PARENTS[j]])[1]}" if j else
                  "It is the root of the skeleton")  # fmt: skip
        children = [_readable(SMPL_JOINT_NAMES[c])[1] for c, p in enumerate(SMPL_PARENTS) if p == j]
        below = f" and moves the {' and the '.join(children)}" if children else " and ends the chain"
        out.append(f"The {plain} of a person, {where}, in the {region}. {parent}{below}.")
    return tuple(out)


def load_joint_text(path: Path = JOINT_TEXT_PATH) -> torch.Tensor:
    """The committed (24, 384) float32 joint-description embeddings."""
    return torch.from_numpy(np.asarray(load_npz(path)["embeddings"], np.float32))


def hop_buckets(parents: tuple[int, ...], max_hops: int) -> torch.Tensor:
    """(J + 2, J + 2) int64: tree distance between joints, capped at ``max_hops``; pairs with the shape or
    camera token (which relate to every joint alike) get their own bucket ``max_hops + 1``. Built in numpy, so
    that it is a real tensor even when the model is built on the meta device."""
    n = len(parents)
    dist = np.full((n, n), n, dtype=np.int64)
    np.fill_diagonal(dist, 0)
    for j, p in enumerate(parents):
        if p >= 0:
            dist[j, p] = dist[p, j] = 1
    for k in range(n):  # Floyd-Warshall on 24 nodes, once
        dist = np.minimum(dist, dist[:, k : k + 1] + dist[k : k + 1, :])
    out = np.full((n + 2, n + 2), max_hops + 1, dtype=np.int64)
    out[:n, :n] = np.minimum(dist, max_hops)
    return torch.from_numpy(out)


class KinematicGraphBias(nn.Module):
    """() -> (heads, J + 2, J + 2) additive attention bias: ``hop_gate[h] * hop_table[h, hop(i, j)] +
    adjacency_gate[h] * log A(i, j)``. The hop table starts at minus the distance (nearer joints attend more
    once the gate opens; the shape/camera bucket at -1); the gates start at zero."""

    def __init__(self, parents: tuple[int, ...], heads: int, max_hops: int, embed_dim: int):
        super().__init__()
        self.register_buffer("hops", hop_buckets(parents, max_hops), persistent=False)
        table = -torch.arange(max_hops + 2, dtype=torch.float32)
        table[-1] = -1.0
        self.hop_table = nn.Parameter(table.repeat(heads, 1))
        self.hop_gate = nn.Parameter(torch.zeros(heads))
        n = len(parents) + 2
        self.node_source = nn.Parameter(torch.randn(n, embed_dim) / embed_dim**0.5)
        self.node_target = nn.Parameter(torch.randn(n, embed_dim) / embed_dim**0.5)
        self.adjacency_gate = nn.Parameter(torch.zeros(heads))

    def log_adjacency(self) -> torch.Tensor:
        """(J + 2, J + 2) log of the learned adjacency (rows of the adjacency sum to one)."""
        return F.log_softmax(torch.relu(self.node_source @ self.node_target.T), dim=-1)

    def forward(self) -> torch.Tensor:
        hop = self.hop_table[:, self.hops]
        return self.hop_gate[:, None, None] * hop + self.adjacency_gate[:, None, None] * self.log_adjacency()


class JointTextPrior(nn.Module):
    """Block index -> (J, dim) addition to the joint tokens' position embeddings: ``gate[block] *
    proj(embeddings)``. ``embeddings`` is a buffer saved with the weights, so a trained model keeps the text
    prior it was trained with."""

    def __init__(self, embeddings: torch.Tensor, dim: int, num_blocks: int):
        super().__init__()
        self.register_buffer("embeddings", embeddings)
        self.proj = nn.Linear(embeddings.shape[1], dim)
        self.gate = nn.Parameter(torch.zeros(num_blocks))

    def forward(self, block: int) -> torch.Tensor:
        return self.gate[block] * self.proj(self.embeddings)
