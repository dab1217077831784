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
