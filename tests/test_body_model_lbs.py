"""The skinning core (hmr.body.lbs): explicit backward passes, the oneDNN path, the constants cache."""

import copy

import numpy as np
import pytest
import torch

from hmr.body import BodyModel
from hmr.body.lbs import _ONEDNN_LINEAR, ancestor_matrix, forward_kinematics, kinematic_levels, skin
from hmr.geometry import axis_angle_to_matrix
from tests.synthetic_smpl import synthetic_smpl_arrays


def _model(num_vertices=40, dtype=torch.float64, **kw):
    return BodyModel.from_arrays(synthetic_smpl_arrays(num_vertices=num_vertices, **kw), "synthetic", dtype=dtype)


def _arrays(m):
    """The model arrays in skin's argument order (after betas, rotmats)."""
    return [m._v_template_flat, m._shapedirs_flat, m.posedirs, m.j_template, m.j_shapedirs, m.weights]


def _pose(b, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    rot = axis_angle_to_matrix(torch.randn(b, 24, 3, generator=g, dtype=dtype) * 0.5)
    return rot, torch.randn(b, 10, generator=g, dtype=dtype), torch.randn(b, 3, generator=g, dtype=dtype)


@pytest.mark.parametrize(("batch", "with_transl", "fast_mode"), [(1, True, False), (3, True, True), (2, False, True)])
def test_skin_gradcheck_inputs(monkeypatch, batch, with_transl, fast_mode):
    import hmr.body.lbs as lbs

    monkeypatch.setattr(lbs, "_BLOCK_BYTES", 2 * 12 * 24 * 8)  # blocks of two samples
    m = _model(num_vertices=24)
    rot, betas, transl = _pose(batch)
    inputs = [betas.requires_grad_(), rot.requires_grad_()] + ([transl.requires_grad_()] if with_transl else [])

    def f(betas, rot, transl=None):
        return skin(betas, rot, *_arrays(m), m.parents, m.levels, transl)

    assert torch.autograd.gradcheck(f, inputs, fast_mode=fast_mode)


def test_skin_gradcheck_model_arrays(monkeypatch):
    """Gradients also reach the model arrays when they require them (e.g. fitting a body model)."""
    import hmr.body.lbs as lbs

    monkeypatch.setattr(lbs, "_BLOCK_BYTES", 12 * 24 * 8)  # one sample per block: gradients summed over blocks
    m = _model(num_vertices=24)
    rot, betas, transl = _pose(2)
    arrays = [a.clone().requires_grad_() for a in _arrays(m)]

    def f(*arrays):
        return skin(betas[:, :7], rot, *arrays, m.parents, m.levels, transl)

    assert torch.autograd.gradcheck(f, arrays, fast_mode=True)


def test_forward_kinematics_matches_per_joint_loop():
    # A tree whose levels are not contiguous blocks of joints, to exercise the level gathers.
    parents = [-1, 0, 0, 1, 2, 1, 3, 4, 4, -1, 9]
    levels = kinematic_levels(parents)
    g = torch.Generator().manual_seed(3)
    rot = axis_angle_to_matrix(torch.randn(3, len(parents), 3, generator=g, dtype=torch.float64))
    rest = torch.randn(3, len(parents), 3, generator=g, dtype=torch.float64)
    world_r, world_t = forward_kinematics(rot, rest, parents, levels)
    for j, p in enumerate(parents):
        if p < 0:
            ref_r, ref_t = rot[:, j], rest[:, j]
        else:
            ref_r = world_r[:, p] @ rot[:, j]
            ref_t = world_t[:, p] + (world_r[:, p] @ (rest[:, j] - rest[:, p])[..., None])[..., 0]
        assert torch.allclose(world_r[:, j], ref_r) and torch.allclose(world_t[:, j], ref_t), j


@pytest.mark.skipif(_ONEDNN_LINEAR is None, reason="torch built without oneDNN")
@pytest.mark.parametrize("batch", [1, 5])
def test_float32_fast_path_matches_float64(batch):
    """float32 on CPU runs the oneDNN products; values and gradients match the float64 reference."""
    m32, m64 = _model(dtype=torch.float32), _model()
    rot, betas, transl = _pose(batch)
    results = []
    for m, dt in ((m32, torch.float32), (m64, torch.float64)):
        inp = [t.to(dt).requires_grad_() for t in (betas, rot, transl)]
        v, j = skin(inp[0], inp[1], *_arrays(m), m.parents, m.levels, inp[2])
        w = torch.linspace(-1, 1, v.numel() + j.numel(), dtype=dt)
        (torch.cat([v.flatten(), j.flatten()]) @ w).backward()
        results.append([v, j] + [t.grad for t in inp])
    for a, b in zip(*results, strict=True):
        assert a.dtype == torch.float32
        assert torch.allclose(a.double(), b, atol=1e-5, rtol=1e-4)


def test_model_without_pose_correctives_and_few_betas():
    arrays = synthetic_smpl_arrays(num_vertices=40)
    del arrays["posedirs"]
    m = BodyModel.from_arrays(arrays, "no correctives", dtype=torch.float64)
    rot, betas, _ = _pose(2)
    betas3 = betas[:, :3].clone().requires_grad_()
    v, _ = skin(betas3, rot, *_arrays(m), m.parents, m.levels)
    padded, _ = skin(torch.cat([betas3, torch.zeros(2, 7, dtype=torch.float64)], 1), rot, *_arrays(m), m.parents,
                     m.levels)  # fmt: skip
    assert torch.allclose(v, padded)
    v.sum().backward()
    assert betas3.grad.shape == (2, 3)


def test_cached_constants_follow_the_model_arrays():
    m = _model(dtype=torch.float32)
    rot, betas, transl = (t.float() for t in _pose(2))
    before = m(betas=betas).vertices
    with torch.no_grad():
        m._v_template_flat += 1.0  # in-place edits are seen (at the zero pose, a pure shift)
    after = m(betas=betas).vertices
    assert torch.allclose(after, before + 1.0, atol=1e-5)
    # A copy and a dtype change get constants of their own; the first use may be under inference mode.
    twin = copy.deepcopy(m).double()
    with torch.inference_mode():
        twin(betas=betas.double())
    pose = rot.double().requires_grad_()
    twin(global_orient=pose[:, :1], body_pose=pose[:, 1:], betas=betas.double()).vertices.sum().backward()
    assert pose.grad is not None and torch.isfinite(pose.grad).all()


def test_batch_sizes_agree():
    """Batch 1 and a large batch give the rows of a mixed batch (no batch-dependent kernels leak in)."""
    m = _model(num_vertices=6890, dtype=torch.float32)
    rot, betas, transl = (t.float() for t in _pose(3))
    full = skin(betas, rot, *_arrays(m), m.parents, m.levels, transl)[0]
    for i in range(3):
        one = skin(betas[i : i + 1], rot[i : i + 1], *_arrays(m), m.parents, m.levels, transl[i : i + 1])[0]
        np.testing.assert_allclose(one[0].numpy(), full[i].numpy(), atol=2e-6)


@pytest.mark.parametrize("constant", ["_CHUNK_BYTES", "_BLOCK_BYTES"])
def test_large_batches_are_skinned_in_chunks(monkeypatch, constant):
    import hmr.body.lbs as lbs

    m = _model()
    rot, betas, transl = _pose(7)
    results = []
    for chunk_bytes in (1 << 40, 3 * 12 * 40 * 8):  # whole batch; chunks of 3 (40 vertices, float64)
        monkeypatch.setattr(lbs, constant, chunk_bytes)
        inp = [t.clone().requires_grad_() for t in (betas, rot, transl)]
        v, j = skin(inp[0], inp[1], *_arrays(m), m.parents, m.levels, inp[2])
        (v.square().sum() + j.sum()).backward()
        results.append([v, j] + [t.grad for t in inp])
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b)


@pytest.mark.parametrize("failure", ["no oneDNN", "packing fails"])
def test_float32_without_onednn_products(monkeypatch, failure):
    import hmr.body.lbs as lbs

    rot, betas, transl = (t.float() for t in _pose(3))
    ref = _model(dtype=torch.float32)
    expected = skin(betas, rot, *_arrays(ref), ref.parents, ref.levels, transl)
    if failure == "no oneDNN":
        monkeypatch.setattr(lbs, "_ONEDNN_LINEAR", None)
    else:

        def refuse(w):
            raise RuntimeError("no")

        monkeypatch.setattr(lbs, "_pack", refuse)
    m = _model(dtype=torch.float32)  # a fresh model: its constants are built under the patch
    pose = rot.clone().requires_grad_()
    v, j = skin(betas, pose, *_arrays(m), m.parents, m.levels, transl)
    assert lbs._consts(m._v_template_flat, m._shapedirs_flat, m.posedirs, m.weights).dirs_packed is None
    assert torch.allclose(v, expected[0], atol=1e-5) and torch.allclose(j, expected[1], atol=1e-5)
    v.sum().backward()
    assert torch.isfinite(pose.grad).all()


def test_pose_input_formats_give_the_same_body():
    """Axis-angle for both parts takes a one-conversion path; mixed formats take the general one."""
    m = _model()
    g = torch.Generator().manual_seed(5)
    go, bp = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(2, 69, generator=g, dtype=torch.float64)
    base = m(global_orient=go, body_pose=bp).vertices
    variants = [
        dict(global_orient=go[:, None], body_pose=bp.view(2, 23, 3)),
        dict(global_orient=go, body_pose=axis_angle_to_matrix(bp.view(2, 23, 3))),
        dict(global_orient=axis_angle_to_matrix(go)[:, None], body_pose=bp),
        dict(global_orient=go, body_pose=torch.cat([bp, bp], 1)[:, :69]),  # not contiguous
    ]
    for kw in variants:
        assert torch.allclose(m(**kw).vertices, base, atol=1e-12)
    assert torch.allclose(m(body_pose=bp).vertices, m(global_orient=torch.zeros(2, 3, dtype=torch.float64),
                                                      body_pose=bp).vertices, atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empty_batch(dtype):
    """No people in a frame is a batch of 0: empty outputs and gradients, no error."""
    m = _model(dtype=dtype)
    pose = torch.zeros(0, 69, dtype=dtype, requires_grad=True)
    out = m(global_orient=torch.zeros(0, 3, dtype=dtype), body_pose=pose, betas=torch.zeros(0, 10, dtype=dtype),
            transl=torch.zeros(0, 3, dtype=dtype))  # fmt: skip
    assert out.vertices.shape == (0, 40, 3) and out.joints.shape == (0, 24, 3)
    out.vertices.sum().backward()
    assert pose.grad.shape == (0, 69)


def test_second_derivatives_are_refused_clearly():
    m = _model()
    pose = torch.randn(1, 69, dtype=torch.float64).requires_grad_()
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(m(body_pose=pose).vertices.square().sum(), pose, create_graph=True)


def test_ancestor_matrix_on_the_smpl_tree():
    from hmr.body import SMPL_JOINT_NAMES, SMPL_PARENTS

    anc = ancestor_matrix(list(SMPL_PARENTS))
    chain = [SMPL_JOINT_NAMES[j] for j in np.flatnonzero(anc[SMPL_JOINT_NAMES.index("left_wrist")])]
    assert chain == ["pelvis", "spine1", "spine2", "spine3", "left_collar", "left_shoulder", "left_elbow", "left_wrist"]
    assert anc.diagonal().all() and anc[:, 0].all() and not anc[0, 1:].any()  # the root is everyone's, no one's child


def test_posed_joints_equal_the_full_forward():
    """The joints-only path (video records) matches forward's joints, shape included."""
    model = _model(dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    rot = axis_angle_to_matrix(torch.randn(4, 24, 3, generator=g, dtype=torch.float64) * 0.5)
    betas = torch.randn(4, 10, generator=g, dtype=torch.float64) * 2
    out = model(global_orient=rot[:, :1], body_pose=rot[:, 1:], betas=betas)
    torch.testing.assert_close(model.posed_joints(rot, betas), out.joints, rtol=0, atol=1e-12)
    assert (model.posed_joints(rot, betas[:, :4]) - out.joints).abs().max() > 1e-3  # the shape matters
