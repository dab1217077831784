"""Keypoint fitting: reduced model, keypoint maps, priors, the synthetic set and fits on a few of its people."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hmr.body import KEYPOINT_SET_NAMES, SMPL_JOINT_NAMES, BodyModel, KeypointSet, KeypointSetUnavailableError
from hmr.config import load_yaml, save_yaml
from hmr.data.people import (
    limb_rotation_deg,
    load_synthetic_set,
    make_clip,
    make_synthetic_set,
    render_keypoints,
    sample_body_poses,
)
from hmr.evaluation.metrics import pa_mpjpe
from hmr.fitting import (
    JOINT_LIMITS,
    FitConfig,
    PosePrior,
    ReducedBodyModel,
    SequenceFitter,
    StageConfig,
    fit,
    keypoint_map,
)
from hmr.fitting.fitter import Fitter
from hmr.fitting.keypoints import reduced_model
from hmr.fitting.problem import PARAMS, Objective, Params, Problem, cam_from_transl
from hmr.fitting.reduced import SurfacePoints
from hmr.fitting.silhouette import outline_set
from hmr.geometry import (
    Camera,
    axis_angle_to_matrix,
    cam_crop_to_full,
    matrix_to_axis_angle,
    matrix_to_rot6d,
)
from hmr.outputs import MeshOutput
from tests.synthetic_smpl import synthetic_smpl_arrays

DATA = Path(__file__).parent / "data" / "fitting_synthetic.npz"


@pytest.fixture(scope="module")
def model() -> BodyModel:
    return BodyModel.default()


@pytest.fixture(scope="module")
def data() -> dict:
    return load_synthetic_set(DATA)


def _subset(data: dict, idx) -> dict:
    return {k: (v[idx] if v.ndim and v.shape[0] == len(data["betas"]) else v) for k, v in data.items()}


def _joints(model: BodyModel, out: MeshOutput) -> torch.Tensor:
    with torch.no_grad():
        return model(out.global_orient, out.body_pose, out.betas).joints


def test_reduced_model_matches_full_model(model):
    torch.manual_seed(0)
    pose, betas, transl = torch.randn(3, 24, 3) * 0.4, torch.randn(3, 10), torch.randn(3, 3)
    smpl_like = BodyModel.from_arrays(synthetic_smpl_arrays(num_vertices=6890), name="with pose correctives")
    for m, name in ((model, "blazepose33"), (model, "openpose25"), (smpl_like, "openpose25")):
        kp_def, _ = keypoint_map(m, name)
        reduced = ReducedBodyModel(m, kp_def)
        with torch.no_grad():
            full = m(pose[:, :1], pose[:, 1:], betas, transl)
            kp, joints = reduced(axis_angle_to_matrix(pose), betas, transl)
        torch.testing.assert_close(kp, full.keypoint_set(name), atol=2e-5, rtol=0)
        torch.testing.assert_close(joints, full.joints, atol=2e-5, rtol=0)
        assert reduced.vertex_joint.shape[0] < 25 * kp_def.num  # a few virtual vertices per keypoint
        # Another point set of the same body reuses these kinematics (the fit's keypoints and surface points).
        surface = outline_set(m, 50)
        rot = axis_angle_to_matrix(pose)
        with torch.no_grad():
            pts, _ = SurfacePoints(m, surface)(rot, betas, transl, reduced.kinematics(rot, betas))
            alone, _ = SurfacePoints(m, surface)(rot, betas, transl)
        torch.testing.assert_close(pts, full.vertices[:, surface], atol=2e-5, rtol=0)
        torch.testing.assert_close(alone, pts, atol=0, rtol=0)


def test_reduced_model_jacobian_matches_autograd(model):
    """The analytic Jacobian (rotation increments, betas, translation), with and without pose correctives."""
    torch.manual_seed(0)
    smpl_like = BodyModel.from_arrays(synthetic_smpl_arrays(num_vertices=6890), name="with pose correctives")
    for m, name in ((model, "openpose25"), (smpl_like, "openpose25"), (model, "blazepose33")):
        reduced = ReducedBodyModel(m, keypoint_map(m, name)[0]).double()
        nj, s = m.num_joints, 10
        rot = axis_angle_to_matrix(torch.randn(2, nj, 3, dtype=torch.float64) * 0.5)
        betas, transl = torch.randn(2, s, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
        out, jac = reduced.linearise(rot, betas, transl)

        def f(x, rot=rot, reduced=reduced, nj=nj, s=s):
            e, b, t = x[:, : 3 * nj].view(-1, nj, 3), x[:, 3 * nj : 3 * nj + s], x[:, 3 * nj + s :]
            return torch.cat(reduced(rot @ axis_angle_to_matrix(e), b, t), 1)

        x = torch.cat([torch.zeros(2, 3 * nj, dtype=torch.float64), betas, transl], 1)
        expected = torch.autograd.functional.jacobian(f, x)
        expected = torch.stack([expected[i, :, :, i] for i in range(2)])
        torch.testing.assert_close(out, f(x), atol=1e-12, rtol=0)
        torch.testing.assert_close(jac, expected, atol=1e-9, rtol=0)
        kp_only, kp_jac = reduced.linearise(rot, betas, transl, with_joints=False)
        k = kp_only.shape[1]
        torch.testing.assert_close((kp_only, kp_jac), (out[:, :k], jac[:, :k]), atol=1e-12, rtol=0)
        assert k == reduced.num_keypoints


def test_reduced_model_cache_follows_the_keypoint_sets():
    m = BodyModel.from_arrays(synthetic_smpl_arrays(num_vertices=6890), name="cached")
    cpu = torch.device("cpu")
    first = reduced_model(m, "coco17", cpu)
    assert reduced_model(m, "coco17", cpu)[2] is first[2]
    assert reduced_model(m, "openpose25", cpu)[2] is not first[2]  # one entry per format
    double = reduced_model(m, "coco17", cpu, torch.float64)[2]  # and per dtype
    assert double is not first[2] and double.v_template.dtype == torch.float64
    assert first[2].v_template.dtype == torch.float32
    kp = m.keypoint_regressors["openpose25"].definition()
    m.add_keypoint_set("openpose25", KeypointSet(kp.names, kp.rows, kp.cols, kp.weights * 1.0))
    assert reduced_model(m, "coco17", cpu)[2] is not first[2]


def test_keypoint_map_by_name_and_errors():
    smpl_like = BodyModel.from_arrays(synthetic_smpl_arrays(num_vertices=6890), name="smpl-like")
    kp, available = keypoint_map(smpl_like, "coco17")  # the model only defines openpose25
    assert kp.names == KEYPOINT_SET_NAMES["coco17"] and available.all()
    kp, available = keypoint_map(smpl_like, "blazepose33")
    names = KEYPOINT_SET_NAMES["blazepose33"]
    assert available[names.index("left_knee")] and not available[names.index("left_pinky")]
    with pytest.raises(ValueError, match="unknown keypoint format"):
        keypoint_map(smpl_like, "body_21")
    bare = BodyModel.from_arrays(synthetic_smpl_arrays(), name="bare")
    with pytest.raises(KeypointSetUnavailableError, match="torso keypoints"):
        keypoint_map(bare, "coco17")


def test_priors_limits_bending_and_projection():
    prior = PosePrior(SMPL_JOINT_NAMES)
    inside = torch.zeros(1, 23, 3)
    assert prior.limit_penalty(inside).sum() == 0
    knee, elbow = SMPL_JOINT_NAMES.index("left_knee") - 1, SMPL_JOINT_NAMES.index("left_elbow") - 1
    back = torch.zeros(2, 23, 3)
    back[0, knee, 0] = -0.3  # knee bent forwards = backwards bend
    back[1, elbow, 1] = 0.3  # left elbow flexion is negative about y
    assert (prior.bending_penalty(back).sum(-1) > 0).all() and (prior.backward_bends(back) < 0).any()
    prior.project_(back)
    assert (prior.backward_bends(back) >= 0).all()
    # Right side limits mirror the left (x, -y, -z).
    for name in ("hip", "knee", "shoulder", "elbow"):
        (lx, ly, lz), (rx, ry, rz) = JOINT_LIMITS[f"left_{name}"], JOINT_LIMITS[f"right_{name}"]
        assert lx == rx and ly == (-ry[1], -ry[0]) and lz == (-rz[1], -rz[0])


def test_synthetic_set_is_what_the_generator_makes(model, data):
    assert len(data["betas"]) >= 50 and int(data["seed"]) == 0
    rng = np.random.default_rng(1)
    poses = sample_body_poses(20, rng)
    assert (limb_rotation_deg(poses) >= 30).all()
    assert (limb_rotation_deg(data["body_pose"].astype(np.float64)) >= 30 - 1e-3).all()
    fresh = make_synthetic_set(model, n=len(data["betas"]), seed=int(data["seed"]))
    for key in ("body_pose", "betas", "global_orient", "focal_length", "image_size", "noise_2d"):
        np.testing.assert_allclose(fresh[key], data[key], atol=1e-6)
    np.testing.assert_allclose(fresh["cam_t"], data["cam_t"], atol=1e-3)
    # Every person is inside their image.
    gt = render_keypoints(data, model)
    inside = (gt["keypoints_2d"] >= 0) & (gt["keypoints_2d"] <= gt["camera"].image_size[:, None])
    assert inside.all()


def test_fit_with_3d_keypoints_recovers_joints(model, data):
    sub = _subset(data, slice(0, 6))
    gt = render_keypoints(sub, model)
    out = fit(gt["keypoints_2d"], gt["confidences"], model, gt["camera"], keypoints_3d=gt["keypoints_3d"])
    err = 1000 * pa_mpjpe(_joints(model, out), gt["joints"])
    assert (err < 20).all(), err
    # Outputs: full-image fields filled and consistent, crop fields absent, model recorded.
    assert out.body_model == model.name and out.pred_cam is None and out.keypoints_2d is None
    assert out.vertices.shape == (6, model.num_vertices, 3) and out.body_pose.shape == (6, 23, 3, 3)
    torch.testing.assert_close(out.keypoints_2d_full, gt["camera"].project(out.keypoints_3d, out.cam_t_full))
    assert (out.keypoints_2d_full - gt["keypoints_2d"]).norm(dim=-1).mean() < 3  # pixels
    torch.testing.assert_close(out.focal_length, gt["camera"].focal_length)


@pytest.mark.parametrize("flat_stages", [2, 0])
def test_cold_fit_with_3d_keypoints_starts_on_the_2d_keypoints(model, data, monkeypatch, flat_stages):
    """The camera and the first ``cold_2d_stages`` stages see only the 2D keypoints, so LM runs them, on every
    hypothesis; the hypotheses are decided, with the 3D keypoints, when those join (Adam from then on)."""
    import hmr.fitting.fitter as fitter_module

    seen, solvers = [], []
    optimise = Fitter.optimise

    def spy(self, p, obj, stage, near=False):
        seen.append((obj.targets.kp3d is not None, len(p.orient)))
        optimise(self, p, obj, stage, near)

    lm = fitter_module.levenberg_marquardt
    cost = Problem.person_cost
    chosen = []
    monkeypatch.setattr(Problem, "person_cost", lambda self, p, t, st: chosen.append((len(seen), t.kp3d is not None))
                        or cost(self, p, t, st))  # fmt: skip
    monkeypatch.setattr(Fitter, "optimise", spy)
    monkeypatch.setattr(fitter_module, "levenberg_marquardt", lambda *a: solvers.append(len(seen)) or lm(*a))
    sub = _subset(data, slice(0, 2))
    gt = render_keypoints(sub, model)
    cfg = FitConfig(cold_2d_stages=flat_stages)
    out = fit(gt["keypoints_2d"], gt["confidences"], model, gt["camera"], keypoints_3d=gt["keypoints_3d"], config=cfg)
    h = cfg.orientation_hypotheses
    if flat_stages:
        assert seen == [(False, 2 * h)] * 3 + [(True, 2)]  # camera, 2 pose stages; the final stage
        assert solvers == [1, 2, 3] and chosen == [(3, True)]
    else:
        assert seen == [(True, 2 * h)] * 2 + [(True, 2)] * 2 and solvers == [] and chosen == [(2, True)]
    assert (1000 * pa_mpjpe(_joints(model, out), gt["joints"]) < 20).all()


def test_shape_stays_within_bound_on_implausible_keypoints(model, data):
    """Keypoints no body of the model can produce (a skeleton stretched sideways) must not drive the shape
    components past ``max_abs_beta``; without the bound they do."""
    gt = render_keypoints(_subset(data, slice(0, 2)), model)
    centre = gt["keypoints_2d"].mean(1, keepdim=True)
    kp2d = centre + (gt["keypoints_2d"] - centre) * torch.tensor([1.8, 1.0])
    kp3d = gt["keypoints_3d"] * torch.tensor([2.0, 1.0, 2.0])
    for kp3 in (None, kp3d):  # Levenberg-Marquardt (2D only) and Adam (with 3D) paths
        out = fit(kp2d, gt["confidences"], model, gt["camera"], keypoints_3d=kp3)
        assert out.betas.abs().max() <= 3.0 + 1e-5
    loose = fit(kp2d, gt["confidences"], model, gt["camera"], keypoints_3d=kp3d, config=FitConfig(max_abs_beta=50.0))
    assert loose.betas.abs().max() > 3.0


@pytest.mark.slow
def test_fit_2d_only_and_noise_on_a_subset(model, data):
    sub = _subset(data, slice(0, 12))
    gt = render_keypoints(sub, model)
    out = fit(gt["keypoints_2d"], gt["confidences"], model, gt["camera"])
    exact = 1000 * pa_mpjpe(_joints(model, out), gt["joints"])
    noisy_gt = render_keypoints(sub, model, noise_px=5.0)
    noisy = fit(noisy_gt["keypoints_2d"], noisy_gt["confidences"], model, gt["camera"])
    noisy_err = 1000 * pa_mpjpe(_joints(model, noisy), gt["joints"])
    # Regression bounds from docs/benchmarks.md (the 40 mm per-person goal is not met by every person yet).
    assert exact.mean() < 70 and noisy_err.mean() < 1.5 * 70
    prior = PosePrior(model.joint_names)
    for o in (out, noisy):
        assert (prior.backward_bends(matrix_to_axis_angle(o.body_pose)) >= 0).all()


def test_fit_is_deterministic_and_never_bends_backwards(model, data):
    sub = _subset(data, [7, 8])
    gt = render_keypoints(sub, model, noise_px=5.0)
    cfg = FitConfig()
    a = fit(gt["keypoints_2d"], gt["confidences"], model, gt["camera"], config=cfg)
    b = fit(gt["keypoints_2d"].numpy(), gt["confidences"].numpy(), model, gt["camera"], config=cfg)
    assert torch.equal(a.body_pose, b.body_pose) and torch.equal(a.cam_t_full, b.cam_t_full)
    bends = PosePrior(model.joint_names).backward_bends(matrix_to_axis_angle(a.body_pose))
    assert (bends >= 0).all()
    # A person's fit does not depend on who else is in the batch (LM stops each person on their own).
    cam = gt["camera"]
    alone = fit(gt["keypoints_2d"][1:], gt["confidences"][1:], model,
                Camera(cam.focal_length[1:], cam.principal_point[1:], cam.image_size[1:]), config=cfg)  # fmt: skip
    torch.testing.assert_close(alone.vertices[0], a.vertices[1], atol=1e-3, rtol=0)


def test_refinement_from_a_network_style_init_keeps_crop_fields(model, data):
    sub = _subset(data, [2, 3])
    gt = render_keypoints(sub, model)
    cam = gt["camera"]
    # A "network" output: the truth with a perturbed pose, its crop camera derived from a known box.
    torch.manual_seed(0)
    pose = torch.as_tensor(sub["body_pose"]) + 0.15 * torch.randn(2, 23, 3)
    t_full = torch.as_tensor(sub["cam_t"])
    box_size = torch.tensor([400.0, 300.0])
    box_centre = cam.image_size / 2 + torch.tensor([[30.0, -20.0], [-50.0, 10.0]])
    bs = 2 * cam.focal_length[:, 0] / t_full[:, 2]
    txy = t_full[:, :2] - 2 * (box_centre - cam.image_size / 2) / bs[:, None]
    pred_cam = torch.cat([(bs / box_size)[:, None], txy], -1)
    init = MeshOutput(
        global_orient=axis_angle_to_matrix(torch.as_tensor(sub["global_orient"]))[:, None],
        body_pose=axis_angle_to_matrix(pose),
        betas=torch.as_tensor(sub["betas"]),
        vertices=torch.zeros(2, 1, 3),
        keypoints_3d=torch.zeros(2, 1, 3),
        body_model=model.name,
        pred_cam=pred_cam,
        cam_t_full=t_full,
        focal_length=cam.focal_length,
    )
    with torch.no_grad():
        posed = model(init.global_orient, init.body_pose, init.betas, t_full).keypoint_set("openpose25")
    reproj_before = (cam.project(posed) - gt["keypoints_2d"]).norm(dim=-1).mean(-1)
    before = 1000 * pa_mpjpe(_joints(model, init), gt["joints"])
    out = fit(gt["keypoints_2d"], gt["confidences"], model, cam, init=init)
    after = 1000 * pa_mpjpe(_joints(model, out), gt["joints"])
    reproj_after = (out.keypoints_2d_full - gt["keypoints_2d"]).norm(dim=-1).mean(-1)
    # 2D keypoints fix what they see; depth errors of the init they cannot see may remain.
    assert (reproj_after < reproj_before / 3).all() and after.mean() < before.mean()
    # The crop camera is re-derived for the same box: converting it back gives the fitted full-image camera,
    # and the crop keypoints land near the full-image ones (the crop camera is a different, longer lens).
    back = cam_crop_to_full(out.pred_cam, box_centre, box_size, cam.image_size, cam.focal_length[:, 0])
    torch.testing.assert_close(back, out.cam_t_full, atol=1e-3, rtol=1e-4)
    crop_px = (out.keypoints_2d + 0.5) * box_size[:, None, None] + box_centre[:, None] - box_size[:, None, None] / 2
    assert ((crop_px - out.keypoints_2d_full).norm(dim=-1) < 0.05 * box_size[:, None]).all()
    torch.testing.assert_close(out.pred_cam_t[:, 2], 2 * 5000 / (256 * out.pred_cam[:, 0]))


def test_video_batch_and_warm_start(model, data):
    frames = 6
    clips = [make_clip(data, i, i + 10, frames) for i in (4, 5)]  # two people moving (fast: 1/5 pose a frame)
    seq = [[render_keypoints(clip[t], model) for clip in clips] for t in range(frames)]
    kp = torch.stack([torch.cat([g["keypoints_2d"] for g in frame]) for frame in seq])  # (T, P, K, 2)
    conf = torch.stack([torch.cat([g["confidences"] for g in frame]) for frame in seq])
    joints = torch.cat([g["joints"] for frame in seq for g in frame])
    camera = Camera(*(torch.cat([getattr(g["camera"], f) for g in seq[0]]) for f in ("focal_length", "principal_point", "image_size")))  # fmt: skip
    out = fit(kp, conf, model, camera)
    assert out.batch_size == frames * 2
    torch.testing.assert_close(out.betas[0], out.betas[2])  # one shape per person over the frames
    batch_err = 1000 * pa_mpjpe(_joints(model, out), joints)
    assert batch_err.mean() < 80

    online = SequenceFitter(model, camera)
    errs = []
    for t in range(frames):
        res = online.step(kp[t], conf[t])
        errs.append(1000 * pa_mpjpe(_joints(model, res), joints[2 * t : 2 * t + 2]))
    # Warm-started frames (with restarts where the warm start lost the person) stay near the batch fit. This clip
    # moves fast (1/5 of a whole pose change per frame): the warm frames measured 57 mm (batch fit 47 mm).
    assert torch.cat(errs).mean() < batch_err.mean() + 15
    with pytest.raises(ValueError, match="reset"):
        online.step(kp[0, :1], conf[0, :1])


def test_warm_start_does_not_drift(model, data):
    """Frame after frame, warm starts stay as accurate as fitting every frame from scratch. (With the regulariser
    centred on the previous frame, and Adam steps, they wandered off: 63 mm against 16 mm on this clip.)"""
    clip = [render_keypoints(frame, model) for frame in make_clip(data, 20, 21, 12)]
    online = SequenceFitter(model, clip[0]["camera"])
    warm, cold = [], []
    for frame in clip:
        kp, conf, cam = frame["keypoints_2d"], frame["confidences"], frame["camera"]
        warm.append(1000 * pa_mpjpe(_joints(model, online.step(kp, conf)), frame["joints"]))
        cold.append(1000 * pa_mpjpe(_joints(model, fit(kp, conf, model, cam)), frame["joints"]))
    warm, cold = torch.cat(warm[1:]), torch.cat(cold[1:])  # measured: 25 and 16 mm
    assert warm.mean() < cold.mean() + 15 and warm.max() < 40, (warm, cold)


@pytest.mark.parametrize("alignment", [None, "similarity", "translation"])
def test_levenberg_marquardt_normal_equations_match_the_loss(model, data, alignment):
    """The LM solver minimises the same objective as Adam: its cost is the loss, and J^T r (from the analytic
    Jacobian; 3D residuals with the alignment held at its optimum) is half the loss's autograd gradient,
    temporal term included."""
    gt = render_keypoints(_subset(data, [0, 1]), model, noise_px=5.0)
    cfg = FitConfig(keypoint_3d_alignment=alignment or "similarity")
    fitter = Fitter(model, "openpose25", cfg, torch.device("cpu"))
    problem = fitter.problem
    kp3d = None if alignment is None else gt["keypoints_3d"] * 1.1 + 0.01 * torch.randn_like(gt["keypoints_3d"])
    t = problem.targets(gt["keypoints_2d"], gt["confidences"], kp3d, gt["camera"], 1, 2)
    p = problem.initial_params(t, None)
    p = fitter.fit_camera(p, t)
    torch.manual_seed(0)
    p.body_pose += 0.2 * torch.randn_like(p.body_pose)
    p.betas += torch.randn_like(p.betas)
    with torch.no_grad():
        t.joint_prediction = problem.forward(p, t)[1] + 0.01 * torch.randn(2, 24, 3)
    obj = Objective(t, t.conf, FitConfig().pose_stages[1])
    x, rot0 = problem.pack(p)
    cost, jtj, g = problem.normal_equations(x, rot0, obj, problem.free_mask(PARAMS))

    def loss(x):
        d, pose, betas, cam = x.split([3, 69, 10, 3], 1)
        q = Params(matrix_to_rot6d(rot0 @ axis_angle_to_matrix(d)), pose.view(2, 23, 3), betas, cam)
        return problem.loss(q, obj)

    x.requires_grad_(True)
    value = loss(x)
    (grad,) = torch.autograd.grad(value, x)
    torch.testing.assert_close(cost.sum(), value.detach(), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(2 * g, grad, rtol=1e-3, atol=1e-3 * grad.abs().max().item())
    assert torch.linalg.eigvalsh(jtj).min() > -1e-6 * jtj.abs().max()  # Gauss-Newton: positive semi-definite


def test_warm_frames_with_3d_keypoints(model, data):
    """The demo's video path: each frame refined from the previous one with 3D landmarks (LM near a solution)."""
    clip = [render_keypoints(frame, model, noise_px=2.0) for frame in make_clip(data, 30, 31, 8)]
    cfg = FitConfig()
    cfg = dataclasses.replace(cfg, refine_stages=cfg.warm_stages)
    seq, prev, errs = SequenceFitter(model, clip[0]["camera"], config=cfg), None, []
    for frame in clip:
        seq.reset()
        prev = seq.step(frame["keypoints_2d"], frame["confidences"], frame["keypoints_3d"], init=prev)
        errs.append(1000 * pa_mpjpe(_joints(model, prev), frame["joints"]))
    assert torch.cat(errs).max() < 20, errs  # measured: 5-10 mm (Adam's 10 steps a frame drifted to 35 mm)


def test_lm_solver_beats_adam_on_2d_only_exact_keypoints(model, data):
    """Regression guard for the solver gain (full numbers in docs/benchmarks.md)."""
    sub = _subset(data, slice(0, None, 5))  # every 5th person: LM 31 mm mean, Adam 46 mm
    gt = render_keypoints(sub, model)
    lm = 1000 * pa_mpjpe(_joints(model, fit(gt["keypoints_2d"], gt["confidences"], model, gt["camera"])), gt["joints"])
    assert lm.mean() < 38, lm


def test_bad_inputs_give_clear_errors(model):
    cam = Camera.full_image(640, 480)
    kp, conf = torch.zeros(1, 25, 2), torch.ones(1, 25)
    with pytest.raises(ValueError, match="expected \\(\\.\\.\\., 17, 2\\)"):
        fit(kp, conf, model, cam, keypoint_format="coco17")
    with pytest.raises(ValueError, match="confidences has shape"):
        fit(kp, conf[:, :3], model, cam)
    with pytest.raises(ValueError, match="torso keypoints"):
        fit(kp, torch.zeros(1, 25), model, cam)
    with pytest.raises(ValueError, match="camera has batch"):
        fit(kp.expand(3, -1, -1), conf.expand(3, -1), model, Camera.full_image(640, 480, batch_size=2))
    with pytest.raises(ValueError, match="keypoint_3d_alignment"):
        fit(kp, conf, model, cam, config=FitConfig(keypoint_3d_alignment="affine"))
    with pytest.raises(ValueError, match="solver"):
        fit(kp, conf, model, cam, config=FitConfig(solver="sgd"))


def test_config_yaml_round_trip(tmp_path):
    cfg = dataclasses.replace(FitConfig(), robust_sigma=0.2)
    save_yaml(cfg, tmp_path / "fit.yaml")
    assert load_yaml(FitConfig, tmp_path / "fit.yaml") == cfg


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_on_gpu_matches_cpu(model, data):
    sub = _subset(data, [0])
    gt = render_keypoints(sub, model)
    cpu = fit(gt["keypoints_2d"], gt["confidences"], model, gt["camera"], keypoints_3d=gt["keypoints_3d"], device="cpu")
    gpu = fit(
        gt["keypoints_2d"], gt["confidences"], model, gt["camera"], keypoints_3d=gt["keypoints_3d"], device="cuda"
    )
    assert gpu.vertices.device.type == "cpu"
    assert math.isclose(1000 * pa_mpjpe(_joints(model, gpu), gt["joints"]).item(),
                        1000 * pa_mpjpe(_joints(model, cpu), gt["joints"]).item(), abs_tol=5.0)  # fmt: skip


def test_fit_openpose_json_files(model, data, tmp_path):
    """OpenPose's --write_json output (missing keypoints as zeros) read and fitted; bad files give clear errors."""
    import json

    from hmr.io.keypoints import read_openpose_json

    gt = render_keypoints(_subset(data, [0, 9]), model)  # two people fitted well from all their keypoints
    flat = torch.cat([gt["keypoints_2d"], torch.ones(2, 25, 1)], -1)
    flat[1, 11] = 0.0  # person 1's right ankle not detected
    path = tmp_path / "frame_000000000000_keypoints.json"
    people = [{"person_id": [-1], "pose_keypoints_2d": p.flatten().tolist(), "face_keypoints_2d": []} for p in flat]
    path.write_text(json.dumps({"version": 1.3, "people": people}))
    kp, conf, fmt = read_openpose_json(path)
    assert fmt == "openpose25" and kp.shape == (2, 25, 2) and conf[1, 11] == 0 and conf[0].min() == 1
    out = fit(kp, conf, model, gt["camera"], keypoint_format=fmt)
    assert (1000 * pa_mpjpe(_joints(model, out), gt["joints"]) < 40).all()

    path.write_text(json.dumps({"people": []}))
    kp, conf, fmt = read_openpose_json(path)
    assert kp.shape == (0, 0, 2) and fmt is None
    for text, message in (("{", "not valid JSON"), ('{"people": 3}', '"people" list'),
                          ('{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}', "BODY_25")):  # fmt: skip
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_openpose_json(path)


def _problem_at_known_params(model, data, alignment, temporal, dtype=torch.float64):
    """A float64 problem for 2 people and parameters at which every prior term is active: joints past their
    limits, a knee and an elbow bent backwards, betas and pose away from the regulariser's centre (an init's
    anchor), and (``temporal``) joints away from their constant-velocity prediction."""
    cfg = FitConfig(keypoint_3d_alignment=alignment or "similarity")
    problem = Problem(model, "openpose25", cfg, torch.device("cpu"), dtype)
    sub = _subset(data, [0, 1])
    gt = render_keypoints(sub, model, noise_px=5.0)
    torch.manual_seed(0)
    kp3d = None if alignment is None else gt["keypoints_3d"] * 1.1 + 0.01 * torch.randn_like(gt["keypoints_3d"])
    t = problem.targets(gt["keypoints_2d"], gt["confidences"], kp3d, gt["camera"], 1, 2)
    truth = {k: torch.as_tensor(v, dtype=dtype) for k, v in sub.items() if k in ("global_orient", "body_pose", "betas", "cam_t")}  # fmt: skip
    pose = truth["body_pose"] + 0.3 * torch.randn(2, 23, 3, dtype=dtype)
    pose[0, SMPL_JOINT_NAMES.index("left_knee") - 1, 0] = -0.4  # bent backwards (and past its limit)
    pose[1, SMPL_JOINT_NAMES.index("right_elbow") - 1, 1] = -0.3
    p = Params(matrix_to_rot6d(axis_angle_to_matrix(truth["global_orient"])), pose, 1.5 * truth["betas"],
               cam_from_transl(truth["cam_t"]))  # fmt: skip
    t.pose_anchor = truth["body_pose"]
    if temporal:
        with torch.no_grad():
            t.joint_prediction = problem.forward(p, t)[1] + 0.02 * torch.randn(2, 24, 3, dtype=dtype)
    return problem, t, p


@pytest.mark.parametrize("temporal", [True, False])
@pytest.mark.parametrize("alignment", [None, "similarity", "translation"])
def test_adam_and_lm_objectives_are_equal(model, data, alignment, temporal):
    """Both solvers minimise one objective: at identical parameters Adam's loss (``Problem.loss``) equals LM's
    cost, the sum of its squared residuals (no factor 1/2), in float64, with every prior term active."""
    problem, t, p = _problem_at_known_params(model, data, alignment, temporal)
    obj = Objective(t, t.conf, StageConfig(80, 0.05, prior_scale=1.0, lm_iterations=10))
    with torch.no_grad():
        joints = problem.forward(p, t)[1]
        pose_terms, shape, temporal_term = problem.penalties(p.body_pose, p.betas, joints, t, obj.priors)
    assert (temporal_term is not None) == temporal
    for term in [*pose_terms, shape] + ([temporal_term] if temporal else []):
        assert term.total() > 0  # every term contributes
    adam_value = problem.loss(p, obj)
    x, rot0 = problem.pack(p)
    cost, _, _ = problem.normal_equations(x, rot0, obj, problem.free_mask(PARAMS))
    assert adam_value.dtype == cost.dtype == torch.float64
    assert abs(cost.sum().item() - adam_value.item()) <= 1e-10 * adam_value.item(), (cost.sum(), adam_value)
    # Without priors (the camera stage) too.
    camera_obj = Objective(t, t.conf, None, ("orient", "cam"))
    cost, _, _ = problem.normal_equations(x, rot0, camera_obj, problem.free_mask(camera_obj.free))
    torch.testing.assert_close(cost.sum(), problem.loss(p, camera_obj), rtol=1e-10, atol=0)


def test_adam_gradient_is_exact_with_the_3d_alignment_held_fixed(model, data, monkeypatch):
    """The 3D term's similarity alignment is computed without autograd; at its optimum (same weights as the
    term's) that leaves the loss's gradient what differentiating through the SVD gives (float64, 3D keypoints
    10% larger than the body's, 1 cm noise, unequal confidences)."""
    problem, t, p = _problem_at_known_params(model, data, "similarity", temporal=False)
    t.conf3d = t.conf3d * torch.linspace(0.2, 1.0, t.conf3d.shape[1], dtype=t.conf3d.dtype)  # the weights matter
    obj = Objective(t, t.conf, StageConfig(80, 0.05, prior_scale=1.0))

    def gradient():
        params = [p.orient.clone().requires_grad_(), p.body_pose.clone().requires_grad_(),
                  p.betas.clone().requires_grad_(), p.cam.clone().requires_grad_()]  # fmt: skip
        return torch.autograd.grad(problem.loss(Params(*params), obj), params)

    held = gradient()
    monkeypatch.setattr(torch, "no_grad", __import__("contextlib").nullcontext)  # through the SVD as well
    through = gradient()
    for a, b in zip(held, through, strict=True):
        assert b.abs().max() > 1e-3
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4 * b.abs().max().item())  # the 1e-6 weights


def test_silhouette_cover_gradient_is_the_nearest_pairs():
    """The cover part picks each mask sample's nearest surface point without autograd; its value and gradient
    are those of the minimum over the whole distance matrix."""
    from hmr.fitting.problem import geman_mcclure
    from hmr.fitting.silhouette import GRID, Silhouette, silhouette_cost

    torch.manual_seed(0)
    n, m, v = 2, 30, 50
    s = Silhouette(torch.rand(n, 1, GRID, GRID, dtype=torch.float64), torch.zeros(n, 2, dtype=torch.float64),
                   torch.full((n,), 2.0, dtype=torch.float64), 200 * torch.rand(n, m, 2, dtype=torch.float64),
                   (torch.rand(n, m) > 0.2).double())  # fmt: skip
    proj = (200 * torch.rand(n, v, 2, dtype=torch.float64)).requires_grad_()
    scale, robust = torch.tensor([150.0, 180.0], dtype=torch.float64), lambda r2: geman_mcclure(r2, 0.1)
    cost = silhouette_cost(proj, s, scale, robust, 0.01, 1.0)
    inside = robust(torch.relu(s.distance(proj) - s.cell[:, None] / scale[:, None]).pow(2)).mean(-1)
    far = robust(torch.relu(torch.cdist(s.points, proj).amin(-1) / scale[:, None] - 0.01).pow(2))
    expected = inside + (far * s.weights).sum(-1) / s.weights.sum(-1)
    torch.testing.assert_close(cost, expected, rtol=1e-12, atol=0)
    (g,) = torch.autograd.grad(cost.sum(), proj)
    (g_expected,) = torch.autograd.grad(expected.sum(), proj)
    assert g_expected.abs().max() > 0
    torch.testing.assert_close(g, g_expected, rtol=1e-10, atol=1e-14)


def test_each_prior_penalty_gives_lm_its_loss_and_gradient(model, data):
    """One definition per prior term feeds both solvers: LM's residuals square-sum to Adam's loss and their
    J^T r is half its gradient, term by term."""
    problem, t, p = _problem_at_known_params(model, data, None, temporal=True)
    pose, betas = p.body_pose.clone().requires_grad_(True), p.betas.clone().requires_grad_(True)
    pose_terms, shape, _ = problem.penalties(pose, betas, None, t, StageConfig(80, 0.05, prior_scale=1.0))
    for term, x in [(term, pose) for term in pose_terms] + [(shape, betas)]:
        r, d2, jtr = term.normal_terms()
        torch.testing.assert_close(r.pow(2).sum(), term.total(), rtol=1e-12, atol=0)
        (grad,) = torch.autograd.grad(term.total(), x, retain_graph=True)
        torch.testing.assert_close(2 * jtr, grad, rtol=1e-12, atol=1e-15)
        (dr,) = torch.autograd.grad(r.sum(), x)  # each residual depends on one parameter
        torch.testing.assert_close(torch.broadcast_to(torch.as_tensor(d2, dtype=dr.dtype), dr.shape), dr**2)


def test_levenberg_marquardt_turns_the_root(model, data):
    """LM re-anchors the root rotation on its increment after every step: from an init turned by 20 degrees it
    finds the orientation again (without the re-anchoring the orientation never changes)."""
    sub = _subset(data, [0, 1])
    gt = render_keypoints(sub, model)
    go = torch.as_tensor(sub["global_orient"])
    turn = axis_angle_to_matrix(torch.tensor([[0.0, math.radians(20.0), 0.0], [math.radians(14.0), 0.0, 0.0]]))
    init = MeshOutput(
        global_orient=(axis_angle_to_matrix(go) @ turn)[:, None],
        body_pose=axis_angle_to_matrix(torch.as_tensor(sub["body_pose"])),
        betas=torch.as_tensor(sub["betas"]),
        vertices=torch.zeros(2, 1, 3),
        keypoints_3d=torch.zeros(2, 1, 3),
        body_model=model.name,
        cam_t_full=torch.as_tensor(sub["cam_t"]),
    )
    out = fit(gt["keypoints_2d"], gt["confidences"], model, gt["camera"], init=init)  # LM refine stages
    rel = out.global_orient[:, 0].transpose(1, 2) @ axis_angle_to_matrix(go)
    angle = torch.rad2deg(matrix_to_axis_angle(rel).norm(dim=-1))
    assert (angle < 10).all(), angle  # measured 6.9 and 1.9 degrees


def test_bad_inputs_name_the_argument(model):
    from hmr.geometry import Camera

    cam = Camera.full_image(640, 480)
    with pytest.raises(ValueError, match="keypoints_2d must be a torch tensor or numpy array, got list"):
        fit([[0.0, 0.0]] * 25, torch.ones(1, 25), model, cam, keypoint_format="openpose25")
    with pytest.raises(ValueError, match="confidences must be a torch tensor or numpy array"):
        fit(torch.zeros(1, 25, 2), "high", model, cam, keypoint_format="openpose25")


def test_init_without_full_image_camera_gets_one(model, data):
    """A network output with only its rotations and shape (no cam_t_full): the camera is fitted first."""
    sub = _subset(data, [2, 3])
    gt = render_keypoints(sub, model)
    init = MeshOutput(
        global_orient=axis_angle_to_matrix(torch.as_tensor(sub["global_orient"]))[:, None],
        body_pose=axis_angle_to_matrix(torch.as_tensor(sub["body_pose"])),
        betas=torch.as_tensor(sub["betas"]),
        vertices=torch.zeros(2, 1, 3),
        keypoints_3d=torch.zeros(2, 1, 3),
        body_model=model.name,
    )
    out = fit(gt["keypoints_2d"], gt["confidences"], model, gt["camera"], init=init)
    assert (out.keypoints_2d_full - gt["keypoints_2d"]).norm(dim=-1).mean() < 5.0  # pixels
    torch.testing.assert_close(out.cam_t_full, torch.as_tensor(sub["cam_t"]).float(), atol=0.1, rtol=0.05)


def test_twist_is_regularised_more_than_bending():
    from hmr.fitting.priors import _TWIST_AXIS, PosePrior

    prior = PosePrior(SMPL_JOINT_NAMES, twist_weight=4.0)
    plain = PosePrior(SMPL_JOINT_NAMES, twist_weight=1.0)
    for name, axes in _TWIST_AXIS.items():
        i = SMPL_JOINT_NAMES.index(name) - 1
        axes = [axes] if isinstance(axes, int) else axes
        torch.testing.assert_close(prior.reg_weights[i, axes], 4.0 * plain.reg_weights[i, axes])
        others = [a for a in range(3) if a not in axes]
        assert torch.equal(prior.reg_weights[i, others], plain.reg_weights[i, others])


def test_float64_keypoints_fit_a_float32_model(model, data):
    gt = render_keypoints(_subset(data, [0]), model)
    out = fit(gt["keypoints_2d"].double(), gt["confidences"].double(), model, gt["camera"],
              keypoints_3d=gt["keypoints_3d"].double())  # fmt: skip
    assert out.vertices.dtype == torch.float32 and torch.isfinite(out.vertices).all()


def test_a_nan_keypoint_is_ignored_not_the_person(model, data):
    gt = render_keypoints(_subset(data, [0, 1]), model)
    kp = gt["keypoints_2d"].clone()
    kp[0, 4] = float("nan")  # one wrist lost
    clean = fit(gt["keypoints_2d"], gt["confidences"], model, gt["camera"])
    out = fit(kp, gt["confidences"], model, gt["camera"])
    # The other keypoints still pull that person into place, and the other person is untouched.
    assert (out.keypoints_2d_full[0, 5:] - gt["keypoints_2d"][0, 5:]).norm(dim=-1).mean() < 5.0
    torch.testing.assert_close(out.vertices[1], clean.vertices[1])
