"""What the fit believes: unseen parts stay at their start, keypoints off the mask are dropped, the silhouette
term pulls the body onto a person mask (hmr.fitting.keypoints.observation_map, hmr.fitting.silhouette)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hmr.body import SMPL_JOINT_NAMES, BodyModel
from hmr.data.people import load_synthetic_set, render_keypoints
from hmr.fitting import FitConfig, fit, keypoint_map
from hmr.fitting.keypoints import observation_map
from hmr.fitting.priors import PosePrior
from hmr.fitting.silhouette import GRID, silhouette_targets
from hmr.geometry import matrix_to_axis_angle

DATA = Path(__file__).parent / "data" / "fitting_synthetic.npz"
LEGS = ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")


@pytest.fixture(scope="module")
def model() -> BodyModel:
    return BodyModel.default()


@pytest.fixture(scope="module")
def person(model) -> dict:
    data = load_synthetic_set(DATA)
    one = {k: v[:1] if v.ndim else v for k, v in data.items()}
    return {"data": one, **render_keypoints(one, model, "blazepose33")}


def _names(model):
    return keypoint_map(model, "blazepose33")[0].names


def test_observation_map_chains(model):
    kp, _ = keypoint_map(model, "blazepose33")
    obs = observation_map(model, kp)
    names, joints = kp.names, SMPL_JOINT_NAMES
    need = {n: {names[q] for q in np.flatnonzero(obs["support"][names.index(n)].numpy())} for n in names}
    assert need["left_ankle"] == {"left_hip", "left_knee"}
    assert need["right_wrist"] == {"right_shoulder", "right_elbow"}
    assert need["left_hip"] == set() and need["nose"] == set()
    moves = obs["moves"].numpy()
    # the knee's rotation is told by the ankle, not by the knee keypoint at its pivot
    assert moves[joints.index("left_knee"), names.index("left_ankle")]
    assert not moves[joints.index("left_knee"), names.index("left_knee")]
    assert not moves[joints.index("left_knee"), names.index("right_ankle")]
    assert moves[joints.index("left_hip"), names.index("left_knee")]


def _cut_at_hips(person, names, low=0.3):
    """Knees low-confidence (as BlazePose reports limbs it invents), ankles and feet confident."""
    conf = person["confidences"].clone()
    for n in ("left_knee", "right_knee"):
        conf[:, names.index(n)] = low
    return conf


def _leg_angles(out, prior):
    aa = matrix_to_axis_angle(out.body_pose[0])
    diff = []
    for j in LEGS:
        i = SMPL_JOINT_NAMES.index(j) - 1
        diff.append(math.degrees((aa[i] - prior.mean_pose[i]).norm().item()))
    return diff


def test_unseen_legs_stay_neutral(model, person):
    names = _names(model)
    conf = _cut_at_hips(person, names)
    kp2d = person["keypoints_2d"].clone()
    # the invented legs: ankles pulled up to the hips (a crouch nothing in the image shows)
    for side in ("left", "right"):
        for part in ("ankle", "heel", "foot_index", "knee"):
            kp2d[:, names.index(f"{side}_{part}")] = kp2d[:, names.index(f"{side}_hip")] + torch.tensor([0.0, 20.0])
    cfg = FitConfig(visible_confidence=0.5)
    out = fit(kp2d, conf, model, person["camera"], keypoint_format="blazepose33", config=cfg)
    observed = dict(zip(SMPL_JOINT_NAMES, out.joint_observed[0].tolist(), strict=True))
    assert not any(observed[j] for j in LEGS) and observed["pelvis"] and observed["left_elbow"]
    prior = PosePrior(model.joint_names)
    assert max(_leg_angles(out, prior)) < 5.0
    # without the rule the invented crouch is fitted
    off = fit(kp2d, conf, model, person["camera"], keypoint_format="blazepose33", config=FitConfig())
    assert all(off.joint_observed[0, SMPL_JOINT_NAMES.index(j)] for j in LEGS)
    assert max(_leg_angles(off, prior)) > 30.0


def _silhouette(model, data, size) -> np.ndarray:
    t = {k: torch.as_tensor(v) for k, v in data.items() if v.dtype.kind == "f"}
    with torch.no_grad():
        out = model(t["global_orient"], t["body_pose"], t["betas"], t["cam_t"])
    f, c = t["focal_length"][0], t["principal_point"][0]
    v = out.vertices[0]
    uv = (f * v[:, :2] / v[:, 2:] + c).numpy()
    mask = np.zeros(size[::-1], np.uint8)
    for tri in np.round(uv[model.faces.numpy()] * 4).astype(np.int32):  # one polygon each: fillPoly's even-odd rule
        cv2.fillConvexPoly(mask, tri, 1, shift=2)  # would cut holes where triangles overlap
    return mask.astype(np.float32)


def test_silhouette_raster_distances():
    mask = np.zeros((1, 200, 300), np.float32)
    mask[0, 50:150, 100:200] = 1.0
    kp = torch.tensor([[[100.0, 50.0], [200.0, 150.0]]])
    s = silhouette_targets(mask, kp, torch.ones(1, 2, dtype=torch.bool), torch.tensor([100.0]))
    pts = torch.tensor([[[150.0, 100.0], [240.0, 100.0], [150.0, 30.0], [400.0, 100.0]]])
    d = s.distance(pts)[0]
    assert d[0].item() == pytest.approx(0.0, abs=0.01)
    # 40 px right of the square and 20 px above it, in units of the 100 px person; beyond the raster its border
    assert d[1].item() == pytest.approx(0.4, abs=0.03)
    assert d[2].item() == pytest.approx(0.2, abs=0.03)
    assert d[3].item() == pytest.approx(0.5, abs=0.03)
    assert s.cell[0].item() == pytest.approx(100 * 2.0 / GRID, rel=1e-3)
    samples = s.points[0, s.weights[0] > 0]
    assert len(samples) > 100  # mask pixels, all inside the square
    assert ((samples >= torch.tensor([99.0, 49.0])) & (samples <= torch.tensor([201.0, 151.0]))).all()


def test_keypoint_off_the_mask_is_dropped(model, person):
    names = _names(model)
    size = tuple(int(v) for v in person["camera"].image_size[0].tolist())
    mask = _silhouette(model, person["data"], size)
    kp2d = person["keypoints_2d"].clone()
    wrist = names.index("left_wrist")
    kp2d[:, wrist] += torch.tensor([0.0, -0.5]) * float(np.ptp(np.nonzero(mask)[0]))  # far above the body
    cfg = FitConfig(silhouette_weight=1.0)
    from hmr.fitting.problem import Problem

    problem = Problem(model, "blazepose33", cfg, torch.device("cpu"))
    t = problem.targets(kp2d, person["confidences"], None, person["camera"], 1, 1, mask[None])
    assert t.conf[0, wrist] == 0 and t.conf[0, names.index("right_wrist")] > 0
    assert not t.observed[0, SMPL_JOINT_NAMES.index("left_elbow")]
    # the same keypoint on the body is kept
    t2 = problem.targets(person["keypoints_2d"], person["confidences"], None, person["camera"], 1, 1, mask[None])
    assert t2.conf[0, wrist] > 0


def test_silhouette_cost_is_lowest_at_the_true_body(model, person):
    """The term's minimum is the body that made the mask: wider, narrower or shifted bodies cost more, and a
    fit given the mask keeps the keypoint fit's agreement with it (IoU within 1%)."""
    from hmr.fitting.problem import Objective, Params, Problem, cam_from_transl
    from hmr.geometry import axis_angle_to_matrix, matrix_to_rot6d

    data = dict(person["data"])
    kp = render_keypoints(data, model, "blazepose33")
    size = tuple(int(v) for v in kp["camera"].image_size[0].tolist())
    mask = _silhouette(model, data, size)
    cfg = FitConfig()
    problem = Problem(model, "blazepose33", cfg, torch.device("cpu"))
    t = problem.targets(kp["keypoints_2d"], kp["confidences"], None, kp["camera"], 1, 1, mask[None])
    stage = cfg.final_stages[0]

    def cost(betas, shift=0.0):
        cam = torch.as_tensor(data["cam_t"]).float().reshape(1, 3) + torch.tensor([[shift, 0.0, 0.0]])
        p = Params(matrix_to_rot6d(axis_angle_to_matrix(torch.as_tensor(data["global_orient"]).float().reshape(1, 3))),
                   torch.as_tensor(data["body_pose"]).float().reshape(1, -1, 3), torch.as_tensor(betas).float(),
                   cam_from_transl(cam))  # fmt: skip
        return problem.terms(p, Objective(t, t.conf, stage))[0][0, -1].item()

    true = data["betas"]
    wide, slim = true.copy(), true.copy()
    wide[0, :] += 1.5
    slim[0, :] -= 1.5
    assert cost(true) < 0.5 * min(cost(wide), cost(slim), cost(true, 0.1), cost(true, -0.1))
    # the inside part alone sees the wider body
    problem.cfg = dataclasses.replace(cfg, silhouette_cover=0.0)
    assert cost(wide) > 10 * max(cost(true), 1e-6)
    problem.cfg = cfg

    def iou(out):
        fitted = {"global_orient": matrix_to_axis_angle(out.global_orient[:, 0]).numpy(),
                  "body_pose": matrix_to_axis_angle(out.body_pose).numpy(), "betas": out.betas.numpy(),
                  "cam_t": out.cam_t_full.numpy(), "focal_length": kp["camera"].focal_length.numpy(),
                  "principal_point": kp["camera"].principal_point.numpy()}  # fmt: skip
        sil = _silhouette(model, fitted, size) > 0
        return (sil & (mask > 0)).sum() / (sil | (mask > 0)).sum()

    args = (kp["keypoints_2d"], kp["confidences"], model, kp["camera"])
    plain = fit(*args, keypoints_3d=kp["keypoints_3d"], keypoint_format="blazepose33")
    masked = fit(*args, keypoints_3d=kp["keypoints_3d"], keypoint_format="blazepose33", masks=mask[None])
    assert iou(masked) > iou(plain) - 0.01 and iou(masked) > 0.9
    off = fit(*args, keypoints_3d=kp["keypoints_3d"], keypoint_format="blazepose33", masks=mask[None],
              config=dataclasses.replace(cfg, silhouette_weight=0.0))  # fmt: skip
    assert torch.allclose(off.vertices, plain.vertices)


def _vertex_error(model, out, data) -> float:
    """Mean distance (mm) between the fitted and the true body in the neutral pose, pelvis on pelvis."""
    zero = torch.zeros(1, model.num_joints - 1, 3)
    with torch.no_grad():
        fitted = model(betas=out.betas, body_pose=zero)
        true = model(betas=torch.as_tensor(data["betas"]).float(), body_pose=zero)
    a = fitted.vertices[0] - fitted.joints[0, :1]
    b = true.vertices[0] - true.joints[0, :1]
    return 1000 * (a - b).norm(dim=-1).mean().item()


def test_rigid_alignment_uses_the_3d_scale(model, person):
    """Metric 3D keypoints tell height, which 2D keypoints (size / depth) and a similarity alignment cannot."""
    data = dict(person["data"])
    betas = np.zeros_like(data["betas"])
    betas[0, 0] = 1.5  # the component that changes height most on the default model
    data["betas"] = betas
    kp = render_keypoints(data, model, "blazepose33")
    args = (kp["keypoints_2d"], kp["confidences"], model, kp["camera"])
    errors = {}
    for mode in ("similarity", "rigid"):
        out = fit(*args, keypoints_3d=kp["keypoints_3d"], keypoint_format="blazepose33",
                  config=FitConfig(keypoint_3d_alignment=mode, shape_prior_floor=1.0))  # fmt: skip
        errors[mode] = _vertex_error(model, out, data)
    assert errors["rigid"] < 0.5 * errors["similarity"], errors


def test_shape_prior_floor(model):
    from hmr.fitting.config import StageConfig
    from hmr.fitting.problem import Problem

    final = StageConfig(iterations=1, lr=0.1, prior_scale=0.01)
    strong = StageConfig(iterations=1, lr=0.1, prior_scale=10.0)
    for floor, expected in ((0.0, 1e-6), (1.0, 1e-4)):
        problem = Problem(model, "blazepose33", FitConfig(shape_weight=1e-4, shape_prior_floor=floor), torch.device("cpu"))
        assert problem.shape_weight(final) == pytest.approx(expected)
        assert problem.shape_weight(strong) == pytest.approx(1e-3)


def test_torso_cut_by_the_bottom_border(model, person):
    from hmr.fitting.problem import Problem
    from hmr.fitting.silhouette import torso_cut_at_bottom

    masks = np.zeros((3, 100, 200), np.float32)
    masks[0, 40:, 60:140] = 1  # a torso running out of the picture: one 80 px run on the last row
    masks[1, 40:, 60:80] = masks[1, 40:, 120:140] = 1  # two legs standing on the border: two 20 px runs
    masks[2, 40:90, 60:140] = 1  # a torso that ends inside the picture
    width = torch.full((3,), 60.0)
    assert torso_cut_at_bottom(masks, width).tolist() == [True, False, False]
    assert not torso_cut_at_bottom(masks[:1], torch.tensor([120.0])).item()  # 80 < 0.8 * 120

    names = _names(model)
    size = tuple(int(v) for v in person["camera"].image_size[0].tolist())
    mask = _silhouette(model, person["data"], size)
    problem = Problem(model, "blazepose33", FitConfig(), torch.device("cpu"))
    legs = [names.index(n) for n in ("left_knee", "right_ankle", "left_foot_index")]
    full = problem.targets(person["keypoints_2d"], person["confidences"], None, person["camera"], 1, 1, mask[None])
    assert (full.conf[0, legs] > 0).all()
    cut = mask.copy()  # the legs' keypoints stay on the mask; only the last row says the border cuts a torso
    xs = mask.any(0).nonzero()[0]
    cut[-1, xs.min() : xs.max() + 1] = 1
    t = problem.targets(person["keypoints_2d"], person["confidences"], None, person["camera"], 1, 1, cut[None])
    # legs and hips (below the picture, wherever the detector puts them) dropped, shoulders kept
    assert (t.conf[0, legs] == 0).all() and t.conf[0, names.index("left_hip")] == 0
    assert t.conf[0, names.index("left_shoulder")] > 0
    # the fit then places the body by its shoulders and head (upward direction from the nose)
    out = fit(person["keypoints_2d"], person["confidences"], model, person["camera"], keypoint_format="blazepose33",
              masks=cut[None])  # fmt: skip
    observed = dict(zip(SMPL_JOINT_NAMES, out.joint_observed[0].tolist(), strict=True))
    assert not any(observed[j] for j in LEGS)
    head = [names.index(n) for n in ("nose", "left_shoulder", "right_shoulder", "left_ear", "right_ear")]
    err = (out.keypoints_2d_full[0, head] - person["keypoints_2d"][0, head]).norm(dim=-1).mean()
    assert err < 0.02 * float(np.ptp(person["keypoints_2d"][0].numpy(), 0).max())


def test_height_prior(model, person):
    from hmr.fitting.priors import height_scale

    scale = height_scale(model.shapedirs, model.v_template, model.num_betas, 1000.0)
    tallest = int(torch.argmax(scale))
    # the default body's first component changes its height by about 0.32 m per sd; the others barely
    assert tallest == 0 and 60 < scale[0] < 140 and (scale[1:] < 1.1).all()
    assert torch.equal(height_scale(model.shapedirs, model.v_template, model.num_betas, 0.0), torch.ones(model.num_betas, dtype=torch.float64))
    args = (person["keypoints_2d"], person["confidences"], model, person["camera"])
    b0 = {}
    for w in (0.0, 1000.0):
        out = fit(*args, keypoints_3d=person["keypoints_3d"] * 0.9, keypoint_format="blazepose33",
                  config=FitConfig(shape_prior_floor=1.0, height_prior=w))  # fmt: skip
        b0[w] = abs(out.betas[0, 0].item())
    assert b0[1000.0] < 0.3 * b0[0.0], b0


def test_initial_depth_from_the_shoulders_alone(model, person):
    """Without hips the depth comes from the shoulders' spread, measured on the same points in 3D and 2D."""
    from hmr.fitting.hypotheses import initial_camera
    from hmr.fitting.problem import Problem

    names = _names(model)
    conf = person["confidences"].clone()
    conf[:, [names.index("left_hip"), names.index("right_hip")]] = 0
    problem = Problem(model, "blazepose33", FitConfig(), torch.device("cpu"))
    t = problem.targets(person["keypoints_2d"], conf, None, person["camera"], 1, 1)
    p = initial_camera(problem, problem.initial_params(t, None), t, keep_orient=False, h=1)
    depth = p.transl()[0, 2].item()
    assert depth == pytest.approx(float(person["data"]["cam_t"][0, 2]), rel=0.25)


def test_near_mask():
    from hmr.fitting.silhouette import near_mask

    mask = np.zeros((1, 100, 100), np.float32)
    mask[0, 40:60, 40:60] = 1
    pts = torch.tensor([[[50.0, 50.0], [65.0, 50.0], [80.0, 50.0], [150.0, 50.0], [50.0, -5.0]]])
    # inside; 6 px right of the mask (radius 8); 21 px off; outside the image (twice): no evidence against them
    assert near_mask(mask, pts, torch.tensor([8.0]))[0].tolist() == [True, True, False, True, True]
    assert near_mask(mask, pts, torch.tensor([2.0]))[0].tolist() == [True, False, False, True, True]


def test_masks_of_the_wrong_shape_are_refused(model, person):
    from hmr.fitting.problem import Problem

    problem = Problem(model, "blazepose33", FitConfig(), torch.device("cpu"))
    args = (person["keypoints_2d"], person["confidences"], None, person["camera"], 1, 1)
    for silhouette in (True, False):  # also when the masks only judge keypoints
        with pytest.raises(ValueError, match=r"masks has shape \(2, 10, 10\); expected \(1, H, W\)"):
            problem.targets(*args, np.zeros((2, 10, 10), np.float32), silhouette=silhouette)
