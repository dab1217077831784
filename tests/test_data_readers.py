"""Readers on files written the way the real ones are: 4D-Humans webdataset tars (``.jpg`` + pickled
``.data.pyd`` list of per-person dicts + ``.detection.npz``), HMR 2.0 evaluation npz files and the mocap npz
(field names and dtypes from hmr2-facts.md §5), including corrupt members; mixing and worker splitting."""

import io
import os
import pickle
import tarfile

import cv2
import numpy as np
import pytest
import torch

from hmr.data import (
    DataConfig,
    DatasetLayoutError,
    DatasetSpec,
    FilterConfig,
    MixedDataset,
    SampleDataset,
    collate,
    open_reader,
    training_dataset,
)
from hmr.data.npz import MocapReader, NpzReader
from hmr.data.tars import TarReader, expand_shards

RNG = np.random.default_rng(0)


def _jpeg(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(), img[..., ::-1]


def _person(seed=0, loss=100.0, betas_scale=1.0, visible=44, det_idx=0):
    rng = np.random.default_rng(seed)
    kp2d = np.c_[rng.uniform(20, 140, (44, 2)), np.ones(44)].astype(np.float32)
    kp2d[visible:, 2] = 0
    kp2d[5, 2] = 0.2  # below 4D-Humans' 0.3 threshold: becomes 0 when filtered
    return {
        "keypoints_2d": kp2d,
        "keypoints_3d": np.c_[rng.normal(size=(44, 3)), np.ones(44)].astype(np.float32),
        "center": np.array([80.0, 60.0], np.float32),
        "scale": np.array([0.5, 0.55], np.float32),  # units of 200 px
        "body_pose": rng.normal(size=72).astype(np.float32) * 0.2,
        "betas": (rng.normal(size=10) * betas_scale).astype(np.float32),
        "has_body_pose": np.float32(1.0),
        "has_betas": np.float32(1.0),
        "extra_info": {"fitting_loss": np.array({"reprojection_loss": loss}), "detection_npz_idx": det_idx},
    }


def _write_tar(path, items, protocol=4):
    """items: (key, {ext: bytes}) in order, members named ``<key>.<ext>`` as webdataset writes them."""
    with tarfile.open(path, "w") as tar:
        for key, members in items:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _masks(n, h=120, w=160):
    buf = io.BytesIO()
    m = np.zeros((n, h, w), bool)
    for i in range(n):
        m[i, 10 * i : 10 * i + 50, 20:90] = True
    np.savez(buf, masks=m)
    return buf.getvalue(), m


def _good_shard(path, protocol=4, prefix="a"):
    jpg, img = _jpeg()
    masks, m = _masks(2)
    people = [_person(1, det_idx=1), _person(2, det_idx=0)]
    _write_tar(path, [
        (f"{prefix}0001", {"jpg": jpg, "data.pyd": pickle.dumps(people, protocol=protocol), "detection.npz": masks}),
        (f"{prefix}0002", {"jpg": jpg, "data.pyd": pickle.dumps([_person(3)], protocol=protocol)}),
    ])  # fmt: skip
    return people, img, m


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_tar_reads_people_masks_and_fields(tmp_path, protocol):
    people, img, masks = _good_shard(tmp_path / "000000.tar", protocol)
    reader = TarReader(str(tmp_path / "{000000..000000}.tar"), filters=FilterConfig(enabled=False))
    got = list(reader.iterate())
    assert [a.key for _, a in got] == ["a0001/0", "a0001/1", "a0002/0"]
    image, ann = got[0]
    assert np.abs(image.astype(int) - img.astype(int)).mean() < 3  # JPEG, RGB order
    assert np.array_equal(ann.keypoints_2d, people[0]["keypoints_2d"])
    assert np.array_equal(ann.global_orient, people[0]["body_pose"][:3])
    assert np.array_equal(ann.body_pose, people[0]["body_pose"][3:])
    assert np.allclose(ann.size, [100, 110])  # scale x 200
    assert np.array_equal(ann.mask, masks[1].astype(np.uint8))  # detection_npz_idx picks the mask
    assert got[2][1].mask is None  # no detection.npz: the sample's mask will be all ones
    assert reader.skips.total() == 0 and reader.name == tmp_path.name


def test_tar_filters_are_4d_humans_low1(tmp_path):
    jpg, _ = _jpeg()
    people = [_person(1), _person(2, loss=40000.0), _person(3, visible=4), _person(4, betas_scale=10.0)]
    _write_tar(tmp_path / "000000.tar", [("k", {"jpg": jpg, "data.pyd": pickle.dumps(people)})])
    reader = TarReader(str(tmp_path / "000000.tar"))
    got = {a.key: a for _, a in reader.iterate()}
    assert sorted(got) == ["k/0", "k/3"]
    assert got["k/0"].keypoints_2d[5, 2] == 0.0  # confidence 0.2 < 0.3
    big = got["k/3"]  # |beta| > 3: betas untrusted, so the pose too; BETAS_REG pulls the shape to the mean
    assert big.has_body_pose == 0 and big.has_betas == 1 and not big.betas.any()
    assert reader.skips.counts() == {"filtered": 2}


def test_tar_bad_members_are_skipped_and_counted(tmp_path):
    jpg, _ = _jpeg()
    nan = _person(5)
    nan["keypoints_2d"][3, 0] = np.nan

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    _write_tar(tmp_path / "000000.tar", [
        ("ok", {"jpg": jpg, "data.pyd": pickle.dumps([_person(1)])}),
        ("truncated", {"jpg": jpg[: len(jpg) // 2], "data.pyd": pickle.dumps([_person(1)])}),
        ("tail", {"jpg": jpg[:-200], "data.pyd": pickle.dumps([_person(1)])}),  # OpenCV refuses truncated JPEGs
        ("garbage", {"jpg": b"not an image", "data.pyd": pickle.dumps([_person(1)])}),
        ("nopyd", {"jpg": jpg}),
        ("nojpg", {"data.pyd": pickle.dumps([_person(1)])}),
        ("nan", {"jpg": jpg, "data.pyd": pickle.dumps([nan, _person(6)])}),
        ("evil", {"jpg": jpg, "data.pyd": pickle.dumps([Evil()])}),
        ("shape", {"jpg": jpg, "data.pyd": pickle.dumps([{**_person(1), "keypoints_2d": np.zeros((25, 3))}])}),
    ])  # fmt: skip
    reader = TarReader(str(tmp_path / "000000.tar"))
    keys = [a.key for _, a in reader.iterate()]
    assert keys == ["ok/0", "nan/1"]
    assert reader.skips.counts() == {"corrupt_image": 3, "missing_key": 2, "non_finite": 1, "bad_value": 2}
    assert not (tmp_path / "pwned").exists()


def test_truncated_and_garbage_shards_do_not_stop_the_epoch(tmp_path):
    _good_shard(tmp_path / "000000.tar")
    data = (tmp_path / "000000.tar").read_bytes()
    (tmp_path / "000001.tar").write_bytes(data[: len(data) * 2 // 3])  # cut in the second sample
    (tmp_path / "000002.tar").write_bytes(b"\x00garbage" * 100)
    _good_shard(tmp_path / "000003.tar", prefix="d")
    reader = TarReader(str(tmp_path / "{000000..000003}.tar"), filters=FilterConfig(enabled=False))
    keys = [a.key for _, a in reader.iterate()]
    assert keys[:3] == ["a0001/0", "a0001/1", "a0002/0"] and keys[-3:] == ["d0001/0", "d0001/1", "d0002/0"]
    assert reader.skips.counts()["unreadable_shard"] == 2  # each broken shard once


def test_shard_patterns_and_layout_errors(tmp_path):
    for i in range(3):
        _good_shard(tmp_path / f"{i:06d}.tar")
    assert len(expand_shards("{000000..000002}.tar", tmp_path)) == 3
    assert len(expand_shards(str(tmp_path))) == 3
    with pytest.raises(DatasetLayoutError, match=r"000003\.tar: shard not found and 1 more of 5"):
        expand_shards(str(tmp_path / "{000000..000004}.tar"))
    (tmp_path / "sub").mkdir()
    with pytest.raises(DatasetLayoutError, match="no .tar shards"):
        expand_shards(str(tmp_path / "sub"))
    with pytest.raises(DatasetLayoutError, match="not found"):
        open_reader(DatasetSpec(path=str(tmp_path / "nothing.npz")))
    with pytest.raises(DatasetLayoutError, match="expected 4D-Humans .tar shards"):
        open_reader(DatasetSpec(path=str(tmp_path / "nothing.bin")))


def test_dataloader_workers_read_each_person_once_and_share_skip_counts(tmp_path):
    for i in range(4):
        _good_shard(tmp_path / f"{i:06d}.tar", prefix=f"s{i}")
    with tarfile.open(tmp_path / "000004.tar", "w") as tar:  # one bad image, counted in a worker
        info = tarfile.TarInfo("bad.jpg")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"12345"))
        blob = pickle.dumps([_person(1)])
        info = tarfile.TarInfo("bad.data.pyd")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    reader = TarReader(str(tmp_path / "{000000..000004}.tar"), filters=FilterConfig(enabled=False))
    ds = SampleDataset(reader, image_size=64)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate)
    keys = [k for b in loader for k in b.key]
    assert sorted(keys) == sorted(f"s{i}{k}" for i in range(4) for k in ("0001/0", "0001/1", "0002/0"))
    assert reader.skips.counts() == {"corrupt_image": 1}


def _eval_npz(tmp_path, n=4, with_objects=True):
    root = tmp_path / "images"
    (root / "seq").mkdir(parents=True)
    names = []
    for i in range(n):
        jpg, _ = _jpeg(seed=i)
        (root / "seq" / f"{i:05d}.jpg").write_bytes(jpg)
        names.append(f"seq/{i:05d}.jpg")
    rng = np.random.default_rng(1)
    fields = {
        "imgname": np.array(names),  # '<U13', as the preprocessors write it
        "center": rng.uniform(60, 100, (n, 2)).astype(np.float32),
        "scale": np.full((n, 2), 1.2 * 80, np.float32),  # pixels (1.2 x box w, h)
        "body_keypoints_2d": np.c_[rng.uniform(0, 160, (n, 25, 2)), np.ones((n, 25, 1))].reshape(n, 25, 3).astype(np.float32),
        "extra_keypoints_2d": np.c_[rng.uniform(0, 160, (n, 19, 2)), np.ones((n, 19, 1))].reshape(n, 19, 3).astype(np.float32),
        "body_keypoints_3d": np.ones((n, 25, 4), np.float32),
        "extra_keypoints_3d": rng.normal(size=(n, 19, 4)).astype(np.float32),
        "body_pose": rng.normal(size=(n, 72)).astype(np.float32),
        "has_body_pose": np.ones(n, np.float32),
        "betas": rng.normal(size=(n, 10)).astype(np.float32),
        "has_betas": np.ones(n, np.float32),
        "part": np.zeros((n, 24, 3), np.float32),
    }
    if with_objects:
        fields["extra_info"] = np.array([{"id": i} for i in range(n)], dtype=object)
    np.savez(tmp_path / "3dpw_test.npz", **fields)
    return tmp_path / "3dpw_test.npz", root, fields


def test_eval_npz_reader(tmp_path):
    path, root, f = _eval_npz(tmp_path)
    reader = NpzReader(path, root)
    assert len(reader) == 4 and reader.name == "3dpw_test"
    image, ann = reader.read(2)
    assert image.shape == (120, 160, 3)
    assert np.array_equal(ann.keypoints_2d, np.concatenate([f["body_keypoints_2d"][2], f["extra_keypoints_2d"][2]]))
    assert np.allclose(ann.size, 96)  # pixels, unchanged
    assert np.array_equal(ann.keypoints_3d[25:], f["extra_keypoints_3d"][2])
    assert not ann.keypoints_3d[1:15, 3].any() and ann.keypoints_3d[0, 3] == 1  # 4D-Humans' npz quirk
    assert ann.has_body_pose == 1 and np.array_equal(ann.betas, f["betas"][2])
    assert ann.key == "2:seq/00002.jpg"


def test_eval_npz_layout_errors(tmp_path):
    path, root, f = _eval_npz(tmp_path)
    with pytest.raises(DatasetLayoutError, match="image not found"):
        NpzReader(path)  # imgname is relative to images/, not the npz's folder
    with pytest.raises(DatasetLayoutError, match="image folder not found"):
        NpzReader(path, tmp_path / "nope")
    del f["extra_keypoints_2d"]
    np.savez(tmp_path / "broken.npz", **f)
    with pytest.raises(DatasetLayoutError, match=r"broken\.npz: not a HMR 2.0 evaluation npz \(no extra_keypoints_2d\)"):
        NpzReader(tmp_path / "broken.npz", root)
    (tmp_path / "trunc.npz").write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetLayoutError, match="trunc.npz"):
        NpzReader(tmp_path / "trunc.npz", root)


def test_eval_npz_missing_image_is_a_skip(tmp_path):
    path, root, _ = _eval_npz(tmp_path, with_objects=False)
    (root / "seq" / "00001.jpg").unlink()
    (root / "seq" / "00003.jpg").write_bytes(b"\xff\xd8 broken")
    ds = SampleDataset(NpzReader(path, root), image_size=64)
    assert [s.key for s in ds] == ["0:seq/00000.jpg", "2:seq/00002.jpg"]
    assert ds.skips.counts() == {"corrupt_image": 1, "missing_key": 1}


def test_map_style_readers_split_over_workers(tmp_path):
    path, root, _ = _eval_npz(tmp_path, n=7)
    ds = SampleDataset(NpzReader(path, root), image_size=32)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    assert sorted(k for b in loader for k in b.key) == sorted(s.key for s in ds)
    assert len(list(ds)) == 7


def test_mocap_reader(tmp_path):
    pose = np.random.default_rng(0).normal(size=(5, 72)).astype(np.float32)
    pose[3, 10] = np.nan
    np.savez(tmp_path / "cmu_mocap.npz", body_pose=pose, betas=np.zeros((5, 10), np.float32))
    r = MocapReader(tmp_path / "cmu_mocap.npz")
    assert len(r) == 4 and r.skipped == 1
    bp, betas = r.read(0)
    assert bp.shape == (69,) and np.array_equal(bp, pose[0, 3:]) and betas.shape == (10,)
    np.savez(tmp_path / "bad.npz", poses=pose)
    with pytest.raises(DatasetLayoutError, match="no 'body_pose'"):
        MocapReader(tmp_path / "bad.npz")


def test_mixing_follows_the_weights_and_is_deterministic(tmp_path):
    a, root_a, _ = _eval_npz(tmp_path / "a")
    b, root_b, _ = _eval_npz(tmp_path / "b")

    def mix(seed):
        parts = [SampleDataset(NpzReader(p, r, name=n), 32, None, shuffle=True, repeat=True, seed=seed)
                 for p, r, n in ((a, root_a, "A"), (b, root_b, "B"))]  # fmt: skip
        return MixedDataset(parts, [3.0, 1.0], epoch_size=400, seed=seed, shuffle_buffer=50)

    names = [s.dataset for s in mix(0)]
    assert len(names) == 400 and 0.68 < names.count("A") / 400 < 0.82
    assert [s.key for s in mix(0)] == [s.key for s in mix(0)]
    assert [s.key for s in mix(0)] != [s.key for s in mix(1)]
    m = mix(0)
    m.set_epoch(1)
    assert [s.key for s in m] != [s.key for s in mix(0)]
    loader = torch.utils.data.DataLoader(mix(0), batch_size=10, num_workers=2, collate_fn=collate)
    assert sum(len(batch) for batch in loader) == 400  # the epoch is split over the workers


def test_training_dataset_from_config(tmp_path):
    for i in range(2):
        _good_shard(tmp_path / f"{i:06d}.tar", prefix=f"s{i}")
    cfg = DataConfig(root=str(tmp_path), train=(DatasetSpec(path="{000000..000001}.tar"),), image_size=64)
    samples = list(training_dataset(cfg))
    assert len(samples) == 6 and samples[0].image.shape == (64, 64, 3)
    with pytest.raises(DatasetLayoutError):
        training_dataset(DataConfig(train=(DatasetSpec(path=str(tmp_path / "x{000000..000001}.tar")),)))


def test_more_readers_than_shards_split_by_sample(tmp_path):
    _good_shard(tmp_path / "000000.tar")
    reader = TarReader(str(tmp_path / "000000.tar"), filters=FilterConfig(enabled=False))
    loader = torch.utils.data.DataLoader(SampleDataset(reader, image_size=32), batch_size=1, num_workers=3, collate_fn=collate)
    keys = [k for b in loader for k in b.key]
    assert sorted(keys) == ["a0001/0", "a0001/1", "a0002/0"]  # each person once, though 2 workers had no shard


def test_field_shapes_nested_kept_transposed_refused():
    from hmr.data import BadSample
    from hmr.data.fields import array

    kp = np.arange(44 * 3, dtype=np.float32).reshape(44, 3)
    assert np.array_equal(array({"k": kp[None]}, "k", (44, 3), "x"), kp)  # (1, 44, 3): SMPLer-style nesting
    assert array({"c": [[1.0], [2.0]]}, "c", (2,), "x").tolist() == [1.0, 2.0]  # a 1-D field in any layout
    with pytest.raises(BadSample, match=r"has shape \(3, 44\)") as err:
        array({"k": kp.T}, "k", (44, 3), "x")  # same size, wrong layout: refused, not scrambled
    assert err.value.reason == "bad_value"
    with pytest.raises(BadSample) as err:
        array({"k": [1e308, 0.0]}, "k", (2,), "x")  # finite in float64, Inf in float32
    assert err.value.reason == "non_finite"
