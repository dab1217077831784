"""The synthetic dataset generator (hmr.data.synth) and its pose/shape samplers (hmr.data.people)."""

from __future__ import annotations

import copy
import io
import json
import math
import tarfile

import cv2
import numpy as np
import pytest
import torch

from hmr.body import SMPL_JOINT_NAMES, load_body_model
from hmr.data import synth
from hmr.data.people import BETA_CLIP, POSE_CATEGORIES, sample_betas, sample_pose
from hmr.fitting.priors import JOINT_LIMITS
from hmr.geometry import Camera, axis_angle_to_matrix
from hmr.io.safe_pickle import loads_pickle

SIZE = (160, 120)
RUN = dict(image_size=SIZE, shard_size=2, eval_fraction=0.25, progress=False)  # 8 images: 2 eval, 3 shards
NUM = 8


@pytest.fixture(scope="module")
def model():
    return load_body_model()


@pytest.fixture(scope="module")
def run_a(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_a")
    summary = synth.generate(out, NUM, body_model=model, seed=0, **RUN)
    return out, summary


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _shards(root):
    return {k: v for k, v in _files(root).items() if k.startswith("train/")}


def _samples(tar_path):
    """key -> {ext: bytes} in file order, checking that each key's members are consecutive."""
    out, order = {}, []
    with tarfile.open(tar_path) as tar:
        for m in tar:
            base = m.name.rsplit("/", 1)[-1]
            key, ext = base.split(".", 1)
            if not order or order[-1] != key:
                assert key not in out, f"members of {key} are not consecutive"
                order.append(key)
            out.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return out


def _all_people(root):
    for shard in sorted((root / "train").glob("*.tar")):
        for key, members in _samples(shard).items():
            people = loads_pickle(members["data.pyd"], key)
            masks = np.load(io.BytesIO(members["detection.npz"]), allow_pickle=False)["masks"]
            image = cv2.imdecode(np.frombuffer(members["jpg"], np.uint8), cv2.IMREAD_COLOR)
            yield key, people, masks, image


# ------------------------------------------------------------------------------------------ the writer
def test_layout_and_summary(run_a):
    out, s = run_a
    assert sorted(p.name for p in (out / "train").iterdir()) == ["000000.tar", "000001.tar", "000002.tar"]
    assert (s.train_images, s.eval_images, s.shards, s.shards_written) == (6, 2, 3, 3)
    assert sorted(p.name for p in (out / "eval" / "images").iterdir()) == ["synth_i000000.jpg", "synth_i000001.jpg"]
    meta = json.loads((out / "synth.json").read_text())
    assert meta["generator_version"] == synth.GENERATOR_VERSION
    assert meta["counts"]["train_people"] == s.train_people == sum(len(p) for _, p, _, _ in _all_people(out))
    assert meta["arguments"]["seed"] == 0 and meta["arguments"]["image_size"] == [list(SIZE)]


def test_same_seed_same_bytes_other_seed_differs(model, run_a, tmp_path):
    out_a, _ = run_a
    synth.generate(tmp_path / "b", NUM, body_model=model, seed=0, **RUN)
    files_a, files_b = _files(out_a), _files(tmp_path / "b")
    assert files_a.keys() == files_b.keys()
    for k in files_a:
        if k != "synth.json":
            assert files_a[k] == files_b[k], k
    jpgs = [m["jpg"] for shard in sorted((out_a / "train").glob("*.tar")) for m in _samples(shard).values()]
    jpgs += [v for k, v in files_a.items() if k.endswith(".jpg")]
    assert len(set(jpgs)) == len(jpgs) == NUM  # every image has its own random stream
    synth.generate(tmp_path / "c", 4, body_model=model, seed=1, **RUN)
    shards_c = _shards(tmp_path / "c")
    assert shards_c and all(shards_c[k] != files_a[k] for k in shards_c)


def test_images_do_not_depend_on_other_shards(model, run_a):
    # Image i is drawn from (seed, i) alone: regenerating it gives the shard's exact bytes.
    out, _ = run_a
    samples = _samples(out / "train" / "000001.tar")
    gen = synth.SynthGenerator(model, image_size=SIZE)
    try:
        img = gen.image(synth.image_rng(0, 5))
    finally:
        gen.close()
    assert sorted(samples) == ["synth_s000001_i000004", "synth_s000001_i000005"]
    assert samples["synth_s000001_i000005"]["jpg"] == synth.encode_jpeg(img.image)


def test_resume_after_interruption(model, run_a, tmp_path, monkeypatch):
    out = tmp_path / "r"
    real = synth.image_rng

    def failing(seed, index):
        if index == 5:  # the second image of shard 1
            raise KeyboardInterrupt
        return real(seed, index)

    monkeypatch.setattr(synth, "image_rng", failing)
    with pytest.raises(KeyboardInterrupt):
        synth.generate(out, NUM, body_model=model, seed=0, **RUN)
    train = out / "train"
    assert sorted(p.name for p in train.iterdir()) == ["000000.tar"]  # no half shard, no temp file
    monkeypatch.setattr(synth, "image_rng", real)
    before = (train / "000000.tar").stat()
    (train / ".000001.tar.tmp").write_bytes(b"left by a killed run")
    s = synth.generate(out, NUM, body_model=model, seed=0, **RUN)
    after = (train / "000000.tar").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (s.shards_skipped, s.shards_written) == (1, 2)
    assert sorted(p.name for p in train.iterdir()) == ["000000.tar", "000001.tar", "000002.tar"]
    ref = _files(run_a[0])
    got = _files(out)
    assert got.keys() == ref.keys()
    assert all(got[k] == ref[k] for k in got if k != "synth.json")
    assert json.loads(got["synth.json"])["counts"] == json.loads(ref["synth.json"])["counts"]


def test_tar_format(run_a):
    out, _ = run_a
    shapes = {"keypoints_2d": (44, 3), "keypoints_3d": (44, 4), "center": (2,), "scale": (2,), "body_pose": (72,),
              "betas": (10,), "has_body_pose": (), "has_betas": (), "focal_length": (2,), "principal_point": (2,),
              "transl": (3,)}  # fmt: skip
    n = 0
    for shard in sorted((out / "train").glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
        assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o644 for m in members)
        for key, parts in _samples(shard).items():
            assert "." not in key and key.startswith("synth_s")
            assert sorted(parts) == ["data.pyd", "detection.npz", "jpg"]
            people = loads_pickle(parts["data.pyd"], key)
            assert isinstance(people, list) and people
            masks = np.load(io.BytesIO(parts["detection.npz"]), allow_pickle=False)["masks"]
            assert masks.dtype == bool and masks.shape == (len(people), SIZE[1], SIZE[0])
            image = cv2.imdecode(np.frombuffer(parts["jpg"], np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (SIZE[1], SIZE[0], 3)
            for i, p in enumerate(people):
                for field, shape in shapes.items():
                    assert np.shape(p[field]) == shape and np.asarray(p[field]).dtype == np.float32, field
                assert p["has_body_pose"] == 1.0 and p["has_betas"] == 1.0
                assert p["extra_info"]["detection_npz_idx"] == i
                assert p["body_model"] == "hmr-anny-v1"
                n += 1
    assert n >= 6


def _check_person(model, p, mask, w, h):
    kp3d, kp2d = p["keypoints_3d"].astype(np.float64), p["keypoints_2d"].astype(np.float64)
    cam = Camera(torch.as_tensor(p["focal_length"][None]).double(), torch.as_tensor(p["principal_point"][None]).double(),
                 torch.tensor([[float(w), float(h)]], dtype=torch.float64))  # fmt: skip
    proj = cam.project(torch.as_tensor(kp3d[None, :, :3]))[0].numpy()
    assert np.abs(proj - kp2d[:, :2]).max() < 0.5
    inside = (kp2d[:, 0] >= 0) & (kp2d[:, 0] < w) & (kp2d[:, 1] >= 0) & (kp2d[:, 1] < h)
    np.testing.assert_array_equal(kp2d[:, 2], inside.astype(float))
    assert np.all(kp3d[:, 3] == 1.0)
    t = {k: torch.as_tensor(p[k][None]) for k in ("body_pose", "betas", "transl")}
    with torch.no_grad():
        o = model(t["body_pose"][:, :3], t["body_pose"][:, 3:], t["betas"], t["transl"])
    kp = torch.cat([o.keypoint_set("openpose25"), o.keypoint_set("extra19")], 1)[0].numpy()
    assert np.abs(kp - kp3d[:, :3]).max() < 1e-4
    assert mask.sum() >= synth.MIN_VISIBLE_PX
    ys, xs = np.nonzero(mask)
    half = p["scale"] * 200 / 2
    assert np.all(np.abs(xs + 0.5 - p["center"][0]) <= half[0]) and np.all(np.abs(ys + 0.5 - p["center"][1]) <= half[1])


def test_ground_truth_is_consistent(model, run_a):
    out, _ = run_a
    for _, people, masks, _ in _all_people(out):
        for i, p in enumerate(people):
            _check_person(model, p, masks[i], *SIZE)
        assert masks.sum(0).max() <= 1  # visible pixels only: an instance per pixel


def test_eval_npz_matches_generator(model, run_a):
    out, _ = run_a
    with np.load(out / "eval" / synth.EVAL_NAME, allow_pickle=False) as f:
        ev = {k: f[k] for k in f.files}
    assert ev["imgname"].dtype.kind == "U" and str(ev["body_model"]) == "hmr-anny-v1"
    n = len(ev["imgname"])
    assert ev["body_keypoints_2d"].shape == (n, 25, 3) and ev["extra_keypoints_3d"].shape == (n, 19, 4)
    assert ev["scale"].shape == (n, 2) and ev["has_betas"].shape == (n,) and ev["transl"].shape == (n, 3)
    gen = synth.SynthGenerator(model, image_size=SIZE)
    try:
        images = [gen.image(synth.image_rng(0, i)) for i in range(2)]
    finally:
        gen.close()
    rows = [
        (f"images/synth_i{i:06d}.jpg", p, img.masks[j])
        for i, img in enumerate(images)
        for j, p in enumerate(img.people)
    ]
    assert [r[0] for r in rows] == list(ev["imgname"])
    for i, img in enumerate(images):
        assert (out / "eval" / "images" / f"synth_i{i:06d}.jpg").read_bytes() == synth.encode_jpeg(img.image)
    for k, (_, p, mask) in enumerate(rows):
        np.testing.assert_array_equal(ev["scale"][k], p["scale"] * 200)  # pixels here, 200 px units in the tars
        np.testing.assert_array_equal(ev["body_keypoints_3d"][k], p["keypoints_3d"][:25])
        np.testing.assert_array_equal(ev["extra_keypoints_2d"][k], p["keypoints_2d"][25:])
        for field in ("center", "body_pose", "betas", "transl", "focal_length", "principal_point"):
            np.testing.assert_array_equal(ev[field][k], p[field])
        row = {
            "keypoints_2d": np.concatenate([ev["body_keypoints_2d"][k], ev["extra_keypoints_2d"][k]]),
            "keypoints_3d": np.concatenate([ev["body_keypoints_3d"][k], ev["extra_keypoints_3d"][k]]),
            **{f: ev[f][k] for f in ("center", "body_pose", "betas", "transl", "focal_length", "principal_point")},
            "scale": ev["scale"][k] / 200,
        }
        _check_person(model, row, mask, *SIZE)


def test_missing_keypoint_set_gets_zero_confidence(model):
    no_extra = copy.deepcopy(model)
    del no_extra.keypoint_regressors["extra19"]
    gen = synth.SynthGenerator(no_extra, image_size=SIZE, people_per_image=1)
    try:
        img = gen.image(np.random.default_rng(3))
    finally:
        gen.close()
    p = img.people[0]
    assert np.all(p["keypoints_3d"][25:] == 0) and np.all(p["keypoints_2d"][25:] == 0)
    assert p["keypoints_3d"][:25, 3].min() == 1.0 and p["keypoints_2d"][:25, 2].max() == 1.0


def test_backgrounds_folder(model, tmp_path):
    bg = np.zeros((90, 200, 3), np.uint8)
    bg[:, :, 1] = 200  # BGR green
    cv2.imwrite(str(tmp_path / "green.png"), bg)
    gen = synth.SynthGenerator(model, image_size=SIZE, backgrounds=tmp_path, people_per_image=1)
    try:
        img = gen.image(np.random.default_rng(0))
    finally:
        gen.close()
    near_people = cv2.dilate(img.masks.any(0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # antialiased edges
    background = img.image[~near_people]
    assert len(background) > 1000 and np.abs(background.astype(int) - [0, 200, 0]).max() <= 2
    with pytest.raises(FileNotFoundError):
        synth.SynthGenerator(model, backgrounds=tmp_path / "missing")


def test_procedural_background_is_not_flat():
    bg = synth.procedural_background(np.random.default_rng(0), *SIZE)
    assert bg.shape == (SIZE[1], SIZE[0], 3) and bg.dtype == np.uint8
    assert bg.reshape(-1, 3).std(0).mean() > 5


# ------------------------------------------------------------------------------------------ samplers
def _limits():
    return np.array([JOINT_LIMITS.get(n, ((-math.pi, math.pi),) * 3) for n in SMPL_JOINT_NAMES[1:]])


@pytest.mark.parametrize("category", list(POSE_CATEGORIES))
def test_pose_categories_within_joint_limits(category):
    rng = np.random.default_rng(0)
    draws = [sample_pose(category, rng) for _ in range(200)]
    pose = np.stack([bp for _, bp in draws])
    lim = _limits()
    assert np.all(pose >= lim[None, :, :, 0] - 1e-9) and np.all(pose <= lim[None, :, :, 1] + 1e-9)
    up = axis_angle_to_matrix(torch.as_tensor(np.stack([go for go, _ in draws])))[:, :, 1].numpy()  # body y axis
    if category == "lying":
        assert np.abs(up[:, 1]).max() < 0.35  # the body's up axis is horizontal
    else:
        assert up[:, 1].min() > 0.9


def test_pose_categories_differ():
    rng = np.random.default_rng(0)
    hip, knee = SMPL_JOINT_NAMES.index("left_hip") - 1, SMPL_JOINT_NAMES.index("left_knee") - 1
    mean = {c: np.mean([sample_pose(c, rng)[1] for _ in range(200)], 0) for c in POSE_CATEGORIES}
    flexion = {c: -np.degrees(m[hip, 0]) for c, m in mean.items()}
    assert flexion["sitting"] - flexion["standing"] > 60 and flexion["crouching"] - flexion["sitting"] > 15
    assert np.degrees(mean["crouching"][knee, 0] - mean["walking"][knee, 0]) > 60
    with pytest.raises(ValueError, match="unknown pose category"):
        sample_pose("flying", rng)


def test_shape_sampler():
    rng = np.random.default_rng(0)
    betas = np.stack([sample_betas(rng) for _ in range(2000)])
    assert betas.shape == (2000, 10) and np.abs(betas).max() <= BETA_CLIP
    np.testing.assert_allclose(betas.std(0)[:2], 1.0, atol=0.08)
    np.testing.assert_allclose(betas.std(0)[2:], 0.7, atol=0.06)
