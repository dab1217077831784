"""The 2D stage's bookkeeping (hmr.pipeline.observe): which detections become people, in which order."""

from __future__ import annotations

import numpy as np

from hmr.detection import Detections
from hmr.landmarks import PoseKeypoints
from hmr.pipeline.observe import observe_people


def _person(dx: float, height: float = 100.0) -> PoseKeypoints:
    pts = np.stack([np.full(33, 50.0 + dx), np.linspace(0, height, 33)], 1).astype(np.float32)
    ones = np.ones(33, np.float32)
    return PoseKeypoints(pts, ones, ones, np.zeros((33, 3), np.float32), np.array([50 + dx, 50, 120, 0], np.float32))


def _pose(landmarks):
    return lambda image, boxes: [landmarks[i] for i in range(len(boxes))]


IMAGE = np.zeros((200, 200, 3), np.uint8)


def test_two_boxes_on_one_body_give_one_person_the_better_scored():
    det = Detections(np.array([[0, 0, 100, 100], [5, 0, 110, 105]], np.float32), np.array([0.6, 0.9], np.float32))
    # Landmarks 3 px apart on a 100 px tall body (under 10%): the same person, kept once (the 0.9 box).
    people = observe_people(IMAGE, lambda im: det, _pose([_person(0), _person(3)]))
    assert len(people) == 1 and people[0].score == np.float32(0.9)
    # 30 px apart: two people, larger box first.
    people = observe_people(IMAGE, lambda im: det, _pose([_person(0), _person(30)]))
    assert [p.score for p in people] == [np.float32(0.9), np.float32(0.6)]


def test_boxes_without_landmarks_kept_only_when_sure_or_given():
    det = Detections(np.array([[0, 0, 50, 50], [60, 0, 120, 60]], np.float32), np.array([0.7, 0.85], np.float32))
    people = observe_people(IMAGE, lambda im: det, _pose([None, None]), box_only_min_score=0.8)
    assert [p.score for p in people] == [np.float32(0.85)] and people[0].keypoints is None
    user = Detections.from_boxes([[0, 0, 50, 50], [5, 0, 55, 50]])
    same = [_person(0), _person(1)]
    assert len(observe_people(IMAGE, None, _pose(same), boxes=user)) == 2  # user boxes are never merged
