"""Tracking (Hungarian assignment) and One-Euro smoothing."""

from __future__ import annotations

import numpy as np

from hmr.tracking import OneEuroFilter, Tracker, project_to_rotation


def test_tracker_keeps_ids_when_people_cross_and_order_changes():
    tr = Tracker()
    ids_a, ids_b = [], []
    for t in range(12):
        a = np.array([10 + 8 * t, 50, 50 + 8 * t, 150], np.float32)  # walks right
        b = np.array([200 - 8 * t, 55, 240 - 8 * t, 155], np.float32)  # walks left, passes a
        boxes = np.stack([a, b]) if t % 2 else np.stack([b, a])  # detector order changes every frame
        ids = tr.update(boxes)
        ia, ib = (ids[0], ids[1]) if t % 2 else (ids[1], ids[0])
        ids_a.append(ia)
        ids_b.append(ib)
    assert len(set(ids_a)) == 1 and len(set(ids_b)) == 1 and ids_a[0] != ids_b[0]


def test_tracker_uses_3d_joints_when_boxes_overlap():
    """Two people standing in the same box region: the 3D joints tell them apart."""
    rng = np.random.default_rng(0)
    pose_a, pose_b = rng.normal(size=(33, 3)), rng.normal(size=(33, 3))
    box = np.array([[0, 0, 100, 200], [5, 0, 105, 200]], np.float32)
    tr = Tracker()
    first = tr.update(box, [pose_a, pose_b])
    swapped = tr.update(box, [pose_b + 0.01, pose_a + 0.01])
    assert swapped == [first[1], first[0]]


def test_tracker_does_not_jump_across_the_image_on_similar_poses():
    pose = np.zeros((33, 3))
    tr = Tracker()
    (first,) = tr.update(np.array([[0, 0, 40, 100]]), [pose])
    (second,) = tr.update(np.array([[400, 0, 440, 100]]), [pose + 0.01])  # same pose, elsewhere
    assert second != first


def test_tracker_new_and_expired_tracks():
    tr = Tracker(max_age=2)
    (i0,) = tr.update(np.array([[0, 0, 10, 20]]))
    (i1,) = tr.update(np.array([[300, 0, 310, 20]]))  # far away: a new person
    assert i1 != i0
    for _ in range(3):
        tr.update(np.zeros((0, 4)))
    assert tr.tracks == []


def test_one_euro_reduces_jitter_and_follows_steps():
    rng = np.random.default_rng(1)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    noisy = 1.0 + 0.05 * rng.normal(size=(200, 3))
    out = np.stack([f(x, 1 / 30) for x in noisy])
    assert out[50:].std() < 0.4 * noisy[50:].std()
    f2 = OneEuroFilter(min_cutoff=1.0, beta=5.0)
    step = np.stack([f2(np.array([0.0 if t < 10 else 1.0]), 1 / 30) for t in range(60)])
    assert abs(step[-1, 0] - 1.0) < 0.01  # converges to the new value
    assert step[10, 0] > 0.0  # follows immediately, with lag


def test_project_to_rotation():
    rng = np.random.default_rng(2)
    m = rng.normal(size=(5, 3, 3))
    r = project_to_rotation(m)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-10)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-10)
    q = project_to_rotation(r + 1e-3 * rng.normal(size=r.shape))
    assert np.abs(q - r).max() < 5e-3


def test_one_euro_by_hand():
    """dt = 1/(2 pi) makes tau/dt = 1/cutoff, so every step is a fraction (module doc formulas): with
    beta = 1/pi the speed term raises the cutoff and the output follows faster than beta = 0."""
    dt = 1 / (2 * np.pi)
    plain, fast = OneEuroFilter(1.0, 0.0, 1.0), OneEuroFilter(1.0, 1 / np.pi, 1.0)
    assert [plain(np.array([x]), dt)[0] for x in (0.0, 1.0, 1.0)] == [0.0, 0.5, 0.75]
    out = [fast(np.array([x]), dt)[0] for x in (0.0, 1.0, 1.0)]
    # step 1: dx = 2 pi, filtered (alpha 1/2) pi, cutoff 2, alpha 2/3 -> 2/3
    # step 2: dx = (1 - 2/3) 2 pi, filtered 5 pi / 6, cutoff 11/6, alpha 11/17 -> 11/17 + 6/17 * 2/3 = 15/17
    np.testing.assert_allclose(out, [0.0, 2 / 3, 15 / 17], rtol=1e-12)
    # A new shape restarts the filter at the sample.
    assert fast(np.array([5.0, 6.0]), dt).tolist() == [5.0, 6.0]


def test_tracker_velocity_by_hand_and_prediction_across_a_gap():
    """A box moving 10 px a frame: velocity = 0.5 v + 0.5 (box - previous box) / frames since seen; the
    predicted box carries the track over a missed frame that plain overlap would lose."""
    tr = Tracker(min_iou=0.5)
    box = np.array([0, 0, 40, 100], np.float32)
    (tid,) = tr.update(box[None])
    tr.update((box + [10, 0, 10, 0])[None])
    np.testing.assert_allclose(tr.tracks[0].velocity, [5, 0, 5, 0])
    tr.update((box + [20, 0, 20, 0])[None])
    np.testing.assert_allclose(tr.tracks[0].velocity, [7.5, 0, 7.5, 0])
    tr.update(np.zeros((0, 4)))  # missed: age 1
    # Seen again two frames after the last detection, 20 px further: IoU with the last box is 1/3 < 0.5,
    # with the box predicted by the velocity (+7.5) it is 0.52.
    (again,) = tr.update((box + [40, 0, 40, 0])[None])
    assert again == tid and tr.tracks[0].hits == 4
    np.testing.assert_allclose(tr.tracks[0].velocity, 0.5 * np.array([7.5, 0, 7.5, 0]) + 0.5 * np.array([10, 0, 10, 0]))


def test_tracker_prefers_the_closer_joints_among_equal_overlaps():
    pose = np.zeros((5, 3))
    tr = Tracker()
    (tid,) = tr.update(np.array([[0, 0, 40, 100]]), [pose])
    ids = tr.update(np.array([[2, 0, 42, 100], [-2, 0, 38, 100]]), [pose + 0.3, pose + 0.01])
    assert ids[1] == tid and ids[0] == tid + 1


def test_tracker_thresholds_are_inclusive_and_ids_count_up():
    tr = Tracker(min_iou=0.5, max_age=2)
    first = tr.update(np.array([[0, 0, 10, 10], [100, 0, 110, 10]]))
    assert first == [0, 1]
    # IoU exactly 0.5 (the lower half of the box): admissible.
    (same,) = tr.update(np.array([[0, 0, 10, 5]]))
    assert same == 0
    tr.update(np.zeros((0, 4)))
    tr.update(np.zeros((0, 4)))  # track 0 unseen for 2 frames: still alive (max_age 2)
    assert [t.track_id for t in tr.tracks] == [0]
    tr.update(np.zeros((0, 4)))
    assert tr.tracks == []
    assert tr.update(np.array([[0, 0, 10, 10]])) == [2]


def test_tracker_joint_match_needs_boxes_near_in_box_heights():
    """Same pose, no overlap: matched when the centres are within max_shift (0.5) box heights, per pair."""
    pose = np.zeros((5, 3))
    tr = Tracker(min_iou=0.9)
    a, b = tr.update(np.array([[0, 0, 40, 100], [1000, 0, 1040, 100]]), [pose, pose + 5])
    # 45 px right: under half the 100 px height; the far person moves too, by 60 px (over 0.5 heights)
    ids = tr.update(np.array([[45, 0, 85, 100], [1060, 0, 1100, 100]]), [pose + 0.01, pose + 5.01])
    assert ids[0] == a and ids[1] not in (a, b)
