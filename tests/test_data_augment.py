"""Augmentation is geometry: after any crop, jitter, rotation or flip, the sample's camera projects its 3D
keypoints onto its 2D keypoints, the pixels move with the keypoints, and flipping twice is the identity."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hmr.data import AugmentConfig, collate, make_sample
from hmr.data.augment import (
    EXTREME_CROP_GROUPS,
    EXTREME_CROP_MARGIN,
    HMR2_AUGMENT,
    SMPLPOSE_AUGMENT,
    crop_transform,
)
from hmr.data.sample import FLIP_PERMUTATION, J24_TO_44, KEYPOINT_NAMES, Annotation, flip_body_pose, flip_orient
from hmr.geometry import square_side

ALWAYS = AugmentConfig(rotation_rate=1.0, flip_rate=0.5, extreme_crop_rate=0.3, translation_factor=0.1)


def _person(rng, focal=(900.0, 900.0), principal=(330.0, 250.0)):
    pts = rng.normal(size=(44, 3)) * [0.3, 0.6, 0.1] + [0.2, 0.1, 5.0]
    f, c = np.asarray(focal), np.asarray(principal)
    uv = pts[:, :2] / pts[:, 2:3] * f + c
    kp2d = np.c_[uv, np.ones(44)].astype(np.float32)
    kp2d[7, 2] = 0  # one unannotated keypoint travels along with confidence 0
    return Annotation(
        kp2d, np.c_[pts, np.ones(44)].astype(np.float32), uv.mean(0), np.array([180.0, 330.0]),
        global_orient=np.array([3.0, 0.1, -0.2], np.float32), body_pose=rng.normal(size=69).astype(np.float32) * 0.3,
        betas=rng.normal(size=10).astype(np.float32), has_global_orient=1, has_body_pose=1, has_betas=1,
        focal_length=f, principal_point=c, dataset="unit", key="p0",
    )  # fmt: skip


def _project(s):
    x = s.keypoints_3d[:, :3].astype(np.float64)
    return x[:, :2] / x[:, 2:3] * s.focal_length + s.principal_point


@pytest.mark.parametrize("cfg", [ALWAYS, HMR2_AUGMENT, SMPLPOSE_AUGMENT, None], ids=["strong", "hmr2", "smplpose", "none"])
@pytest.mark.parametrize("size", [256, 224])
def test_projection_lands_on_2d_keypoints_after_any_augmentation(cfg, size):
    rng = np.random.default_rng(1)
    image = np.zeros((480, 640, 3), np.uint8)
    flips = 0
    for _ in range(40):
        s = make_sample(image, _person(rng), size, cfg, rng)
        assert s.image.shape == (size, size, 3) and s.mask.shape == (size, size)
        assert np.abs(_project(s) - s.keypoints_2d[:, :2]).max() < 0.5
        assert s.has_camera == 1.0
        flips += s.flipped
    if cfg is not None and cfg.flip_rate:
        assert 0 < flips < 40


def test_rotation_is_about_the_optical_axis_and_turns_global_orient_too():
    rng = np.random.default_rng(2)
    ann = _person(rng)
    cfg = AugmentConfig(rotation_rate=1.0, flip_rate=0.0, extreme_crop_rate=0.0, scale_factor=0.0, translation_factor=0.0,
                        color_scale=0.0)  # fmt: skip
    s = make_sample(np.zeros((480, 640, 3), np.uint8), ann, 256, cfg, rng)
    rot = Rotation.from_rotvec(s.global_orient) * Rotation.from_rotvec(ann.global_orient).inv()
    angle = np.degrees(rot.magnitude())
    assert 0.5 < angle <= 60.0
    assert np.allclose(np.abs(rot.as_rotvec() / rot.magnitude()), [0, 0, 1], atol=1e-5)  # about z only
    # The 3D keypoints turned by the same rotation; depth untouched.
    assert np.allclose(s.keypoints_3d[:, :3], rot.apply(ann.keypoints_3d[:, :3]), atol=1e-4)
    assert np.allclose(s.keypoints_3d[:, 2], ann.keypoints_3d[:, 2], atol=1e-5)


def test_pixels_move_with_the_keypoints():
    """A bright dot drawn at each keypoint of the image appears at that keypoint in the crop (this catches the
    half-pixel shift between OpenCV's pixel indices and pixel-centre coordinates, and a flip of one but not the
    other)."""
    rng = np.random.default_rng(3)
    for trial in range(6):
        ann = _person(rng)
        image = np.zeros((480, 640, 3), np.uint8)
        k = 11 + trial  # one keypoint, well inside the image
        ix, iy = (np.floor(ann.center) + rng.integers(-60, 60, 2)).astype(int)
        ann.keypoints_2d[k, :2] = (ix + 0.5, iy + 0.5)  # on a pixel centre
        image[iy - 2 : iy + 3, ix - 2 : ix + 3] = 255
        cfg = AugmentConfig(rotation_rate=1.0, flip_rate=1.0 if trial % 2 else 0.0, extreme_crop_rate=0.0,
                            color_scale=0.0, scale_factor=0.0)  # fmt: skip
        s = make_sample(image, ann, 256, cfg, rng)
        j = FLIP_PERMUTATION.index(k) if s.flipped else k
        gray = s.image[..., 0].astype(np.float64)
        ys, xs = np.nonzero(gray > 0)
        w = gray[ys, xs]
        centroid = np.array([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()]) + 0.5
        assert np.abs(centroid - s.keypoints_2d[j, :2]).max() < 0.35, (trial, centroid, s.keypoints_2d[j, :2])


def test_flip_twice_is_identity():
    rng = np.random.default_rng(4)
    ann = _person(rng)
    pose = ann.body_pose
    assert np.array_equal(flip_body_pose(flip_body_pose(pose)), pose)
    assert not np.allclose(flip_body_pose(pose), pose)
    perm = np.asarray(FLIP_PERMUTATION)
    assert np.array_equal(perm[perm], np.arange(44))
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    ann.mask = (rng.random((480, 640)) > 0.5).astype(np.uint8)
    flip = AugmentConfig(scale_factor=0, rotation_rate=0, translation_factor=0, color_scale=0, flip_rate=1.0,
                         extreme_crop_rate=0)  # fmt: skip
    once = make_sample(image, ann, 256, flip, rng)
    plain = make_sample(image, ann, 256, None)
    assert np.array_equal(once.image[:, ::-1], plain.image)
    assert np.array_equal(once.mask[:, ::-1], plain.mask)
    # The flipped sample, read back as an annotation of the crop and flipped again, is the plain crop.
    back = Annotation(once.keypoints_2d, once.keypoints_3d, np.array([128.0, 128.0]), 256.0, once.global_orient,
                      once.body_pose, once.betas, 1, 1, 1, once.focal_length, once.principal_point)  # fmt: skip
    twice = make_sample(once.image, back, 256, flip, rng)
    assert np.array_equal(twice.image, plain.image)
    for name in ("keypoints_2d", "keypoints_3d", "global_orient", "body_pose", "focal_length", "principal_point"):
        assert np.allclose(getattr(twice, name), getattr(plain, name), atol=1e-3), name


def test_flipped_pose_is_the_mirrored_body():
    """The body model posed with the flipped parameters is the mirror image (x -> -x, left <-> right) of the
    body posed with the original ones, up to the template's own asymmetry."""
    import torch

    from hmr.body import SMPL_JOINT_NAMES, load_body_model

    model = load_body_model()
    rng = np.random.default_rng(10)
    go, pose = rng.normal(size=(4, 3)) * 0.5, rng.normal(size=(4, 69)) * 0.4
    swap = [SMPL_JOINT_NAMES.index(n.replace("left", "X").replace("right", "left").replace("X", "right"))
            for n in SMPL_JOINT_NAMES]  # fmt: skip

    def joints(g, p):
        with torch.no_grad():
            return model(torch.tensor(g, dtype=torch.float32), torch.tensor(p, dtype=torch.float32)).joints.numpy()

    j, jf = joints(go, pose), joints(flip_orient(go), flip_body_pose(pose))
    mirrored = j[:, swap] * np.array([-1.0, 1.0, 1.0])
    mirrored -= mirrored[:, :1] - jf[:, :1]  # the root's rest position need not be on x = 0
    assert np.abs(mirrored - jf).max() < 0.02
    assert np.abs(j - jf).max() > 0.1


def test_flip_permutation_swaps_left_and_right_names():
    for i, j in enumerate(FLIP_PERMUTATION):
        a, b = KEYPOINT_NAMES[i], KEYPOINT_NAMES[j]
        assert a.replace("left", "X").replace("right", "left").replace("X", "right") == b, (a, b)


def test_j24_map_names():
    j24 = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
           "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck_lsp", "head_top_lsp",
           "pelvis_mpii", "thorax_mpii", "spine_h36m", "jaw_h36m", "head_h36m", "nose", "left_eye", "right_eye",
           "left_ear", "right_ear")  # fmt: skip
    assert [KEYPOINT_NAMES[i].split("_", 1)[1] for i in J24_TO_44] == list(j24)


def test_no_camera_gives_the_hmr2_default_and_flag_zero():
    rng = np.random.default_rng(5)
    ann = _person(rng)
    ann.focal_length = ann.principal_point = None
    s = make_sample(np.zeros((100, 100, 3), np.uint8), ann, 224)
    assert s.has_camera == 0.0
    assert np.allclose(s.focal_length, 5000 * 224 / 256) and np.allclose(s.principal_point, 112)


def test_plain_crop_box_and_transform():
    rng = np.random.default_rng(6)
    ann = _person(rng)
    s = make_sample(np.zeros((480, 640, 3), np.uint8), ann, 256, None, bbox_shape=(192, 256))
    # (180, 330) padded to 3:4 is (247.5, 330): the square side is 330.
    assert square_side((180, 330), (192, 256)) == pytest.approx(330) and s.box_size == pytest.approx(330)
    assert square_side((300, 100), (192, 256)) == pytest.approx(400)
    assert s.bbox_expand_factor == pytest.approx(1.0)  # tall box: padding widens it, the larger side stays
    ann.size = np.array([300.0, 100.0])
    wide = make_sample(np.zeros((480, 640, 3), np.uint8), ann, 256, None, bbox_shape=(192, 256))
    assert wide.box_size == pytest.approx(400) and wide.bbox_expand_factor == pytest.approx(400 / 300)
    m = crop_transform(ann.center, 330, 256)
    assert np.allclose(s.crop_transform, m, atol=1e-4)
    assert np.allclose(m[:, :2] @ ann.center + m[:, 2], 128)


def test_extreme_crop_boxes_one_body_part():
    rng = np.random.default_rng(7)
    cfg = AugmentConfig(extreme_crop_rate=1.0, scale_factor=0, translation_factor=0, rotation_rate=0, flip_rate=0)
    ann = _person(rng)
    kp = ann.keypoints_2d
    sides = {}
    for name, group in EXTREME_CROP_GROUPS.items():
        pts = kp[list(group)][kp[list(group), 2] > 0, :2]
        sides[name] = float(np.ptp(pts, 0).max()) * EXTREME_CROP_MARGIN
    seen = set()
    for _ in range(40):
        side = make_sample(np.zeros((480, 640, 3), np.uint8), ann, 256, cfg, rng).box_size
        match = [n for n, v in sides.items() if abs(v - side) < 1e-2]
        assert match, side
        seen.update(match)
    assert len(seen) >= 4


def test_colour_scaling_per_channel():
    rng = np.random.default_rng(8)
    ann = _person(rng)
    image = np.full((480, 640, 3), 100, np.uint8)
    cfg = AugmentConfig(color_scale=0.2, flip_rate=0, rotation_rate=0, extreme_crop_rate=0, scale_factor=0,
                        translation_factor=0)  # fmt: skip
    s = make_sample(image, ann, 256, cfg, rng)
    centre = s.image[128, 128].astype(float)
    assert np.all((centre >= 79) & (centre <= 121)) and len(set(centre)) > 1


def test_collate_shapes_and_types():
    rng = np.random.default_rng(9)
    samples = [make_sample(np.zeros((480, 640, 3), np.uint8), _person(rng), 256, HMR2_AUGMENT, rng) for _ in range(3)]
    b = collate(samples)
    assert len(b) == 3 and b.images.shape == (3, 3, 256, 256) and b.images.dtype.is_floating_point is False
    assert b.keypoints_2d.shape == (3, 44, 3) and b.body_pose.shape == (3, 69) and b.box_size.shape == (3,)
    assert b.key == ["p0"] * 3 and b.crop_transform.shape == (3, 2, 3)
    assert np.array_equal(b.images[1].permute(1, 2, 0).numpy(), samples[1].image)
