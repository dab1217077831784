"""Person detection, BlazePose landmarks per box and image reading, on committed real pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from hmr.apps.inputs import collect_inputs
from hmr.detection import Detections, PersonDetector
from hmr.geometry import box_iou
from hmr.io.images import read_image

ROOT = Path(__file__).resolve().parent.parent
GT = {k: v for k, v in json.loads((ROOT / "tests/data/detection_gt.json").read_text()).items() if not k.startswith("_")}


@pytest.fixture(scope="module")
def detector():
    return PersonDetector()


@pytest.fixture(scope="module")
def pose():
    from hmr.landmarks.blazepose import PoseEstimator

    est = PoseEstimator()
    yield est
    est.close()


def _found(gt_boxes, boxes) -> int:
    if not len(boxes):
        return 0
    iou = box_iou(np.asarray(gt_boxes, np.float32), boxes)
    r, c = linear_sum_assignment(-iou)
    return int((iou[r, c] >= 0.4).sum())


def test_box_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0], atol=1e-6)


def test_both_basketball_players_found(detector):
    det = detector(read_image(ROOT / "examples/basketball1.png"))
    assert len(det) == 2
    assert _found(GT["examples/basketball1.png"], det.boxes) == 2
    assert (det.scores[:-1] >= det.scores[1:]).all()


def test_recall_on_real_pictures(detector):
    """49 hand-boxed people on 3 photos and 8 vtest.avi frames: measured 44/49 at the default threshold."""
    found = sum(_found(boxes, detector(read_image(ROOT / name)).boxes) for name, boxes in GT.items())
    assert found >= 42


def test_tiles_find_more_small_people_without_splitting_big_ones():
    plain, tiled = PersonDetector(), PersonDetector(tiles=True)
    assert len(tiled(read_image(ROOT / "examples/astronaut.jpg"))) == 1  # no part-of-body boxes from tiles
    frame = read_image(ROOT / "tests/data/vtest/frame_000.jpg")
    gt = GT["tests/data/vtest/frame_000.jpg"]
    assert _found(gt, tiled(frame).boxes) > _found(gt, plain(frame).boxes)


def test_nobody_in_plain_images(detector):
    rng = np.random.default_rng(0)
    assert len(detector(np.full((240, 320, 3), 128, np.uint8))) == 0
    assert len(detector(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))) == 0


def test_detector_rejects_bad_arrays(detector):
    with pytest.raises(ValueError, match="RGB uint8"):
        detector(np.zeros((10, 10), np.uint8))


def test_user_boxes_validated():
    d = Detections.from_boxes([[1, 2, 30, 40]])
    assert d.source == "user" and d.scores.tolist() == [1.0]
    with pytest.raises(ValueError, match="x2 > x1"):
        Detections.from_boxes([[10, 2, 5, 40]])


def test_landmarks_for_person_turned_away(detector, pose):
    """Box-driven BlazePose gives landmarks for both players, including the one turned away from the camera
    (whom BlazePose's own face-keyed detector misses)."""
    img = read_image(ROOT / "examples/basketball1.png")
    det = detector(img)
    kps = pose(img, det.boxes)
    assert all(k is not None for k in kps)
    for box, kp in zip(det.boxes, kps, strict=True):
        assert kp.keypoints_2d.shape == (33, 2) and kp.keypoints_3d.shape == (33, 3)
        vis = kp.confidence > 0.5
        assert vis.sum() >= 10
        pts = kp.keypoints_2d[vis]
        margin = 0.1 * (box[3] - box[1])
        assert (pts[:, 0] > box[0] - margin).all() and (pts[:, 0] < box[2] + margin).all()
        assert (pts[:, 1] > box[1] - margin).all() and (pts[:, 1] < box[3] + margin).all()
    # left man faces the camera: his left shoulder (index 11) is on the image's right of his right shoulder
    left_man = kps[int(np.argmin(det.boxes[:, 0]))]
    assert left_man.keypoints_2d[11, 0] > left_man.keypoints_2d[12, 0]
    # world landmarks are metres around the hips: shoulder width 0.2-0.6 m
    width = np.linalg.norm(left_man.keypoints_3d[11] - left_man.keypoints_3d[12])
    assert 0.2 < width < 0.6


def test_landmarks_outside_the_image_have_zero_confidence(pose):
    """A person cut by the border: BlazePose extrapolates the missing legs with high visibility; points
    outside the image must not count for fitting."""
    img = read_image(ROOT / "examples/basketball1.png")[:300]  # the left man cut above the knees
    (kp,) = pose(img, np.array([[30, 82, 160, 478]], np.float32))  # his full-body box, past the border
    outside = (kp.keypoints_2d < 0).any(1) | (kp.keypoints_2d[:, 0] >= img.shape[1])
    outside |= kp.keypoints_2d[:, 1] >= img.shape[0]
    assert outside[[25, 26, 27, 28]].all()  # knees and ankles
    assert (kp.confidence[outside] == 0).all()
    assert (kp.confidence[[11, 12, 23, 24]] > 0.5).all()  # shoulders and hips, inside, still count


def test_no_landmarks_where_no_body(pose):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    assert pose(img, np.array([[50, 20, 150, 280]], np.float32)) == [None]


def test_interrupt_never_leaves_a_frame_in_flight(pose):
    """Ctrl-C or SIGTERM raised just after a frame went in: the call waits for MediaPipe before the exception
    leaves (its threads calling back into a shutting-down interpreter abort the process: CI saw exit -6)."""

    class Interrupting:
        def __init__(self, graph):
            self.graph = graph

        def add_packet_to_input_stream(self, stream, packet):
            self.graph.add_packet_to_input_stream(stream, packet)
            if stream == "roi":
                raise KeyboardInterrupt  # where a signal handler would raise

        def __getattr__(self, name):
            return getattr(self.graph, name)

    img = read_image(ROOT / "examples/basketball1.png")
    real = pose._graph
    pose._graph = Interrupting(real)
    try:
        with pytest.raises(KeyboardInterrupt):
            pose(img, np.array([[30, 82, 160, 478]], np.float32))
        assert "landmarks" in pose._out  # the frame's callbacks had run when the exception left
    finally:
        pose._graph = real
    assert pose(img, np.array([[30, 82, 160, 478]], np.float32))[0] is not None  # and the graph still works


def test_observe_people_combines_detector_and_landmarks(detector, pose):
    from hmr.pipeline.observe import observe_people

    people = observe_people(read_image(ROOT / "examples/basketball1.png"), detector, pose)
    assert len(people) == 2 and all(p.keypoints is not None for p in people)
    # user boxes are kept even where no body is found
    img = np.full((200, 200, 3), 90, np.uint8)
    people = observe_people(img, None, pose, boxes=Detections.from_boxes([[10, 10, 100, 190]]))
    assert len(people) == 1 and people[0].keypoints is None and people[0].source == "user"


def test_read_image_errors(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        read_image(tmp_path / "notes.jpg")
    data = (ROOT / "examples/basketball1.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


def test_collect_inputs_recurses_and_sorts(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/2.png", "1.jpg", "clip.mp4", "readme.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in collect_inputs([tmp_path])] == ["1.jpg", "b/2.png", "clip.mp4"]
    with pytest.raises(FileNotFoundError, match="not found"):
        collect_inputs([tmp_path / "nope"])
