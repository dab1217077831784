"""Functional core of SMPL-family linear blend skinning (no module state, any vertex count).

Speed notes (measured by benchmarks/bench_body_model.py): the arithmetic is two matrix products,
blend shapes and skinning weights (and their transposes in backward), plus a few passes over
per-vertex tensors. Vertex data is kept coordinate-major, (B, 3, V), so every elementwise pass runs
along contiguous vertices. On float32 CPU the products run through oneDNN with weights packed once,
2-3x faster than torch.mm where the BLAS behind it does not use AVX-512 (as on the AMD machine of
the benchmark); elsewhere (float64, GPU, no oneDNN) they are ordinary torch products.
"""

from __future__ import annotations

import functools
import itertools
import weakref
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

# Batches are skinned in chunks whose largest temporary (the per-vertex transforms, 12 numbers per
# vertex and sample) stays near this size: the allocator then reuses memory, whereas fresh
# multi-100 MB buffers cost more in page faults than the arithmetic done in them.
_CHUNK_BYTES = 24 << 20
# Within a chunk, the per-vertex transforms are made and used in blocks of about this size, which
# stay in cache between the product that writes them and the passes that read them.
_BLOCK_BYTES = 6 << 20
# oneDNN's linear (x @ w.T + bias) with prepacked weights; private ops, absent in builds without mkldnn.
_ONEDNN_LINEAR = (
    torch.ops.mkldnn._linear_pointwise
    if torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    else None
)


def kinematic_levels(parents: list[int]) -> list[list[int]]:
    """Group joints by tree depth so forward kinematics runs one batched step per level."""
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        if p >= 0:
            if p >= j:
                raise ValueError(f"joint {j} has parent {p}; parents must precede their children")
            depth[j] = depth[p] + 1
    return [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]


def ancestor_matrix(parents: list[int]) -> np.ndarray:
    """(J, J) bool: row j marks joint j and all its ancestors (the joints whose rotation moves it)."""
    out = np.zeros((len(parents), len(parents)), dtype=bool)
    for j, p in enumerate(parents):
        out[j, j] = True
        if p >= 0:
            out[j] |= out[p]  # parents precede their children (kinematic_levels checks it)
    return out


class _FKPlan(NamedTuple):
    order: torch.Tensor  # joints in level order
    inverse: torch.Tensor  # level order -> joint order
    parent_pos: torch.Tensor  # position (in level order) of each joint's parent; 0 for roots
    is_child: torch.Tensor  # (J, 1): 0 for roots, 1 otherwise
    sizes: list[int]  # joints per level
    gathers: list[torch.Tensor | None]  # per level after the first: parent positions in the level above


@functools.lru_cache(maxsize=64)
def _fk_plan(parents: tuple[int, ...], levels: tuple[tuple[int, ...], ...], device: torch.device) -> _FKPlan:
    order = [j for level in levels for j in level]
    pos = {j: i for i, j in enumerate(order)}
    gathers = []
    for above, level in itertools.pairwise(levels):
        idx = [above.index(parents[j]) for j in level]
        gathers.append(None if idx == list(range(len(above))) else torch.tensor(idx, device=device))
    return _FKPlan(
        torch.tensor(order, device=device),
        torch.tensor(sorted(range(len(order)), key=order.__getitem__), device=device),
        torch.tensor([pos[parents[j]] if parents[j] >= 0 else 0 for j in order], device=device),
        torch.tensor([[float(parents[j] >= 0)] for j in order], device=device),
        [len(level) for level in levels],
        gathers,
    )


def _world_transforms(
    rotmats: torch.Tensor, rest_joints: torch.Tensor, parents: list[int], levels: list[list[int]]
) -> torch.Tensor:
    """World transforms [R | t] (B,J,3,4): one (3x4)@(4x4) product per tree level, in level order."""
    # While tracing (ONNX export) the plan's tensors would be the tracer's: never cache those.
    plan_fn = _fk_plan.__wrapped__ if torch.compiler.is_compiling() else _fk_plan
    plan = plan_fn(tuple(parents), tuple(map(tuple, levels)), rotmats.device)
    b = rotmats.shape[0]
    rot = rotmats.index_select(1, plan.order)
    rest = rest_joints.index_select(1, plan.order)
    rel = rest - rest.index_select(1, plan.parent_pos) * plan.is_child.to(rest.dtype)
    local = torch.cat([rot, rel[..., None]], -1)  # (B,J,3,4)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=local.dtype, device=local.device)
    local4 = torch.cat([local, bottom.expand(b, len(parents), 1, 4)], -2).split(plan.sizes, 1)
    world = [local[:, : plan.sizes[0]]]
    for idx, loc in zip(plan.gathers, local4[1:], strict=True):
        above = world[-1] if idx is None else world[-1].index_select(1, idx)
        world.append(above @ loc)
    return torch.cat(world, 1).index_select(1, plan.inverse)


def forward_kinematics(
    rotmats: torch.Tensor, rest_joints: torch.Tensor, parents: list[int], levels: list[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local rotations (B,J,3,3) and rest joints (B,J,3) -> world rotations (B,J,3,3), posed joints (B,J,3)."""
    world = _world_transforms(rotmats, rest_joints, parents, levels)
    return world[..., :3], world[..., 3]


def shaped_rest_joints(betas: torch.Tensor, j_template: torch.Tensor, j_shapedirs: torch.Tensor) -> torch.Tensor:
    """Rest-pose joints (B, J, 3) for betas (B, k): ``j_template`` (J, 3) + ``j_shapedirs`` (J, 3, >= k) @ betas.
    One expression for :func:`skin` and ``BodyModel.posed_joints``, so that both give the same bits."""
    nj, n = j_template.shape[0], betas.shape[1]
    out = torch.addmm(j_template.reshape(1, -1), betas, j_shapedirs.reshape(nj * 3, -1)[:, :n].T)
    return out.view(betas.shape[0], nj, 3)


def _pack(w: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(w.contiguous())


def _first_order_only(grad: torch.Tensor) -> None:
    if torch.is_grad_enabled() and grad.requires_grad:
        raise RuntimeError(
            "hmr.body skinning has first derivatives only: backward with create_graph=True is not supported"
        )


def _product(x: torch.Tensor, w: torch.Tensor | None, bias: torch.Tensor | None, packed: torch.Tensor | None):
    """``x @ w.T + bias``, through oneDNN when ``packed`` (the packed form of ``w``) is given."""
    if packed is not None:
        return _ONEDNN_LINEAR(x, packed, bias, "none", [], "")
    return F.linear(x, w, bias)


class _Linear(torch.autograd.Function):
    """``x @ w.T + bias`` for a constant-layout ``w``; ``packed`` = oneDNN forms of (w, w.T) or None.

    oneDNN's op has no autograd formula, hence the explicit backward (grads for ``w`` and ``bias``
    only when they require it, e.g. when fitting the model arrays themselves). Like the skinning
    below, it has first derivatives only.
    """

    @staticmethod
    def forward(ctx, x, w, bias, packed):
        ctx.save_for_backward(x, w)
        ctx.packed = packed
        return _product(x, w, bias, packed and packed[0])

    @staticmethod
    def backward(ctx, grad):
        _first_order_only(grad)
        x, w = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _product(grad, None if w is None else w.T, None, ctx.packed and ctx.packed[1])
        if ctx.needs_input_grad[1]:
            grad_w = grad.T @ x
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b, None


class _SkinVertices(torch.autograd.Function):
    """Skinned vertices (B,V,3): ``out[b,v,:] = m[b,:,:3,v] @ x[b,:,v] + m[b,:,3,v]`` where
    ``m = (per_joint @ weights.T).view(B,3,4,V)`` blends the joint transforms per vertex.

    per_joint (12B, J+1), weights (V, J+1) with ``packed`` its oneDNN forms (or None), x (B,3,V) the
    rest-pose vertices. Runs in blocks of ``block`` samples so that each block of ``m`` (and of its
    gradient) is still in cache when the elementwise passes read it; every pass runs along
    contiguous vertices. Written out also because autograd's generic backward for the slices
    allocated and zero-filled a full-size gradient per slice.
    """

    @staticmethod
    def forward(ctx, per_joint, weights, x, packed, block):
        b, nv = x.shape[0], x.shape[2]
        keep = any(ctx.needs_input_grad[:3])
        out = x.new_empty(b, nv, 3)
        blocks = []
        for s in range(0, b, block):
            m = _product(per_joint[12 * s : 12 * (s + block)], weights, None, packed and packed[0]).view(-1, 3, 4, nv)
            xs = x[s : s + block]
            y = torch.addcmul(m[:, :, 3], m[:, :, 0], xs[:, 0:1])
            y.addcmul_(m[:, :, 1], xs[:, 1:2]).addcmul_(m[:, :, 2], xs[:, 2:3])
            out[s : s + block] = y.transpose(1, 2)
            if keep:
                blocks.append(m)
        ctx.save_for_backward(per_joint, weights, x, *blocks)
        ctx.packed, ctx.block = packed, block
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        _first_order_only(grad)
        per_joint, weights, x, *blocks = ctx.saved_tensors
        need_pj, need_w, need_x = ctx.needs_input_grad[:3]
        nv = x.shape[2]
        grad_pj = torch.empty_like(per_joint) if need_pj else None
        grad_w = torch.zeros_like(weights) if need_w else None
        grad_x = torch.empty_like(x) if need_x else None
        for s, m in zip(range(0, x.shape[0], ctx.block), blocks, strict=True):
            rows = slice(12 * s, 12 * (s + m.shape[0]))
            g = grad[s : s + m.shape[0]].transpose(1, 2).contiguous()  # (n,3,V)
            if need_x:
                gx = torch.mul(m[:, 0, :3], g[:, 0:1], out=grad_x[s : s + m.shape[0]])
                gx.addcmul_(m[:, 1, :3], g[:, 1:2]).addcmul_(m[:, 2, :3], g[:, 2:3])
            if need_pj or need_w:
                gm = torch.empty_like(m)
                torch.mul(g[:, :, None], x[s : s + m.shape[0], None], out=gm[:, :, :3])
                gm[:, :, 3] = g
                gm = gm.view(-1, nv)
                if need_pj:
                    w_t = None if weights is None else weights.T
                    grad_pj[rows] = _product(gm, w_t, None, ctx.packed and ctx.packed[1])
                if need_w:
                    grad_w.addmm_(gm.T, per_joint[rows])
        return grad_pj, grad_w, grad_x, None, None


class _Consts(NamedTuple):
    """Model arrays in the layouts :func:`skin` uses (coordinate-major rows, c*V + v)."""

    dirs: torch.Tensor | None  # (3V, S+P) shape then pose blend shapes; None when packed
    bias: torch.Tensor  # (3V,) template
    dirs_packed: tuple[torch.Tensor, torch.Tensor] | None
    weights: torch.Tensor | None  # (V, J+1) skinning weights and a ones column that adds transl
    weights_packed: tuple[torch.Tensor, torch.Tensor] | None


# id(weights) -> (weak references and versions of the arrays, consts); entries leave with their weights.
_CONSTS: dict[int, tuple[list, _Consts]] = {}


def _build_consts(v_template, shapedirs, posedirs, weights, pack: bool) -> _Consts:
    nv = weights.shape[0]
    order = torch.arange(3 * nv, device=weights.device).view(nv, 3).T.reshape(-1)
    dirs = (shapedirs if posedirs is None else torch.cat([shapedirs, posedirs], 1))[order]
    weights1 = torch.cat([weights, weights.new_ones(nv, 1)], 1)
    if not pack:
        return _Consts(dirs, v_template[order, 0], None, weights1, None)
    return _Consts(None, v_template[order, 0], (_pack(dirs), _pack(dirs.T)), None, (_pack(weights1), _pack(weights1.T)))


def _consts(v_template, shapedirs, posedirs, weights) -> _Consts:
    """Derived arrays, built once per set of model arrays and rebuilt when one is replaced or modified."""
    arrays = (v_template, shapedirs, posedirs, weights)
    if any(a is not None and a.requires_grad for a in arrays) and torch.is_grad_enabled():
        return _build_consts(*arrays, pack=False)  # differentiable w.r.t. the arrays; not cached
    key = [(a, 0 if a.is_inference() else a._version) for a in arrays if a is not None]
    hit = _CONSTS.get(id(weights))
    if (
        hit is not None
        and len(hit[0]) == len(key)
        and all(r() is a and v == ver for (r, v), (a, ver) in zip(hit[0], key, strict=True))
    ):
        return hit[1]
    pack = _ONEDNN_LINEAR is not None and weights.device.type == "cpu" and weights.dtype == torch.float32
    # Built outside inference mode so that a cache filled under it still serves training.
    with torch.inference_mode(False), torch.no_grad():
        detached = [a if a is None else a.detach() for a in arrays]
        try:
            consts = _build_consts(*detached, pack=pack)
        except RuntimeError:  # oneDNN refused (unusual CPU or build): the generic products still work
            consts = _build_consts(*detached, pack=False)
    if id(weights) not in _CONSTS:
        weakref.finalize(weights, _CONSTS.pop, id(weights), None)
    _CONSTS[id(weights)] = ([(weakref.ref(a), ver) for a, ver in key], consts)
    return consts


def skin(
    betas: torch.Tensor,
    rotmats: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    posedirs: torch.Tensor | None,
    j_template: torch.Tensor,
    j_shapedirs: torch.Tensor,
    weights: torch.Tensor,
    parents: list[int],
    levels: list[list[int]],
    transl: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SMPL skinning. Returns vertices (B,V,3) and joints (B,J,3), translated by ``transl`` (B,3) if given.

    Model arrays are vertex-major: ``v_template`` (V*3, 1), ``shapedirs`` (V*3, S), ``posedirs``
    (V*3, 9(J-1)) or None when the model has no pose correctives, ``weights`` (V, J).
    ``j_shapedirs`` (J, 3, S) is the joint regressor applied to shapedirs, so joints come from betas
    directly (same result as regressing the shaped mesh). Gradients flow to every tensor argument.
    """
    b, n = betas.shape
    nj, ns = len(parents), shapedirs.shape[1]
    chunk = max(1, _CHUNK_BYTES // (12 * weights.shape[0] * betas.element_size()))
    if b > chunk:  # see _CHUNK_BYTES
        parts = [
            skin(betas[i : i + chunk], rotmats[i : i + chunk], v_template, shapedirs, posedirs, j_template,
                 j_shapedirs, weights, parents, levels, None if transl is None else transl[i : i + chunk])
            for i in range(0, b, chunk)
        ]  # fmt: skip
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    consts = _consts(v_template, shapedirs, posedirs, weights)
    feats = [betas]
    if n < ns:
        feats.append(betas.new_zeros(b, ns - n))
    if posedirs is not None:
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        feats.append((rotmats[:, 1:] - eye).reshape(b, 9 * (nj - 1)))
    # (B, 3, V): rest-pose vertices with shape and pose blend shapes, in one product.
    x = _Linear.apply(torch.cat(feats, 1), consts.dirs, consts.bias, consts.dirs_packed).view(b, 3, weights.shape[0])
    rest_joints = shaped_rest_joints(betas, j_template, j_shapedirs)
    world = _world_transforms(rotmats, rest_joints, parents, levels)
    rot, joints = world[..., :3], world[..., 3]
    # Skinning transform of joint j maps a rest-pose point p to R_j p + (t_j - R_j J_j); the extra
    # column (weight 1 for every vertex) adds transl to the translation part.
    offset = joints - (rot @ rest_joints[..., None]).squeeze(-1)
    per_joint = torch.cat([rot, offset[..., None]], -1).permute(0, 2, 3, 1)  # (B,3,4,J)
    tcol = betas.new_zeros(b, 3, 4, 1) if transl is None else F.pad(transl[:, :, None, None], (0, 0, 3, 0))
    per_joint = torch.cat([per_joint, tcol], -1).view(b * 12, nj + 1)
    block = max(1, _BLOCK_BYTES // (12 * weights.shape[0] * betas.element_size()))
    block = max(1, -(-b // max(1, -(-b // block))))  # equal blocks, as few as that size allows
    verts = _SkinVertices.apply(per_joint, consts.weights, x, consts.weights_packed, block)
    return verts, (joints if transl is None else joints + transl[:, None]).contiguous()
