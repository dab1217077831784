"""How the image pipeline drives the fitter: one fitter per camera, warm starts re-anchored on the detected hips."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from hmr.body import KEYPOINT_SET_NAMES, BodyModel
from hmr.data.people import load_synthetic_set
from hmr.fitting import SequenceFitter
from hmr.geometry import Camera, axis_angle_to_matrix
from hmr.landmarks.blazepose import PoseKeypoints, box_to_roi
from hmr.outputs import MeshOutput
from hmr.pipeline import Pipeline, PipelineConfig
from hmr.pipeline.config import DetectorSection
from hmr.pipeline.image import KEYPOINT_FORMAT
from hmr.pipeline.observe import PersonObservation

DATA = Path(__file__).parent / "data" / "fitting_synthetic.npz"


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(PipelineConfig(detector=DetectorSection(tiles=False)), body_model=BodyModel.default())


def _person(model: BodyModel, index: int):
    """Synthetic person ``index`` as a previous frame's mesh, with their keypoints and joints (no translation)."""
    data = load_synthetic_set(DATA)
    go, pose, betas, cam_t = (torch.as_tensor(data[k][[index]]) for k in ("global_orient", "body_pose", "betas", "cam_t"))  # fmt: skip
    go, pose = axis_angle_to_matrix(go)[:, None], axis_angle_to_matrix(pose)
    with torch.no_grad():
        body = model(go, pose, betas)
    kp = body.keypoint_set(KEYPOINT_FORMAT)
    mesh = MeshOutput(go, pose, betas, body.vertices, kp, KEYPOINT_SET_NAMES[KEYPOINT_FORMAT], model.name,
                      cam_t_full=cam_t)  # fmt: skip
    return mesh, body.joints


def _observe(mesh: MeshOutput, joints: torch.Tensor, camera: Camera, cam_t: torch.Tensor) -> PersonObservation:
    """BlazePose landmarks of ``mesh`` standing at ``cam_t``, seen by ``camera``."""
    kp2d = camera.project(mesh.keypoints_3d, cam_t)[0].numpy()
    box = np.concatenate([kp2d.min(0), kp2d.max(0)]).astype(np.float32)
    ones = np.ones(len(kp2d), np.float32)
    landmarks = PoseKeypoints(kp2d, ones, ones, (mesh.keypoints_3d - joints[:, :1])[0].numpy(), box_to_roi(box))
    return PersonObservation(box, 0.9, "ssdlite", landmarks)


def test_warm_start_is_re_anchored_on_the_detected_hips(pipeline, monkeypatch):
    """Before a warm-started fit the previous mesh is moved, at its depth, so that its hips project onto the
    detected ones: the fitter starts where the person now is (docs/outputs.md, "Re-anchoring")."""
    mesh, joints = _person(pipeline.body_model, 3)
    image = np.zeros((720, 1280, 3), np.uint8)
    camera = pipeline.camera(1280, 720)
    moved = mesh.cam_t_full + torch.tensor([[0.25, -0.1, 0.0]])  # walked sideways
    starts = []
    step = SequenceFitter.step

    def spy(self, *args, init=None, **kwargs):
        starts.append(init)
        return step(self, *args, init=init, **kwargs)

    monkeypatch.setattr(SequenceFitter, "step", spy)
    frame = pipeline(image, previous=[mesh], observations=[_observe(mesh, joints, camera, moved)])
    (start,) = starts
    # Same depth, hip centre on the detected one (the mean of two projections: within a millimetre of the truth).
    torch.testing.assert_close(start.cam_t_full, moved, atol=2e-3, rtol=0)
    fitted = frame.people[0].mesh
    torch.testing.assert_close(fitted.cam_t_full, moved, atol=0.02, rtol=0)


def test_each_camera_gets_its_own_fitter(pipeline):
    """The pipeline keeps a fitter per camera: a frame of another size (another default camera) is fitted in its
    own camera, exactly as by a new pipeline, not in the camera of the frames before it. (Fitted in a wrong
    camera, every keypoint is an outlier to the robust loss and the fit barely moves from where it started.)"""
    mesh, joints = _person(pipeline.body_model, 3)
    torch.manual_seed(0)
    bent = axis_angle_to_matrix(0.15 * torch.randn(1, 23, 3)) @ mesh.body_pose
    start = dataclasses.replace(mesh, body_pose=bent)  # the previous frame's pose, ~10 degrees off per joint

    def run(p: Pipeline, width: int, height: int) -> MeshOutput:
        obs = _observe(mesh, joints, p.camera(width, height), mesh.cam_t_full)
        return p(np.zeros((height, width, 3), np.uint8), previous=[start], observations=[obs]).people[0].mesh

    video = Pipeline(PipelineConfig(detector=DetectorSection(tiles=False)), body_model=pipeline.body_model)
    first, other, again = (run(video, *size) for size in ((640, 480), (1280, 720), (640, 480)))
    alone = run(pipeline, 1280, 720)
    assert (other.vertices - start.vertices).abs().max() > 0.01  # the fit moved
    torch.testing.assert_close(other.vertices, alone.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(again.vertices, first.vertices, atol=1e-5, rtol=0)
