"""synth -> tar / npz -> readers -> augmented samples: the ground truth comes back exactly, and every sample's
camera projects its 3D keypoints onto its 2D keypoints; ``hmr data check`` and ``hmr data synth`` end to end."""

import re
import tarfile

import numpy as np
import pytest

from hmr.cli import main
from hmr.data import HMR2_AUGMENT, SMPLPOSE_AUGMENT, FilterConfig, SampleDataset, make_sample
from hmr.data.npz import NpzReader
from hmr.data.synth import generate
from hmr.data.tars import TarReader
from hmr.io.safe_pickle import loads_pickle


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(out, 10, seed=3, image_size=(200, 160), shard_size=4, eval_fraction=0.2, progress=False)
    return out


def _truth(out):
    """key/i -> person dict, straight from the tars with the restricted unpickler."""
    truth = {}
    for shard in sorted((out / "train").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar:
                if m.name.endswith(".data.pyd"):
                    for i, p in enumerate(loads_pickle(tar.extractfile(m).read(), m.name)):
                        truth[f"{m.name.split('.')[0]}/{i}"] = p
    return truth


def _project(s):
    x = s.keypoints_3d[:, :3].astype(np.float64)
    return x[:, :2] / x[:, 2:3] * s.focal_length + s.principal_point


def test_tar_reader_gives_back_the_ground_truth(synth_dir):
    truth = _truth(synth_dir)
    got = list(TarReader(str(synth_dir / "train"), filters=FilterConfig(enabled=False)).iterate())
    assert sorted(a.key for _, a in got) == sorted(truth) and len(got) >= 10
    for image, ann in got:
        p = truth[ann.key]
        assert np.array_equal(ann.keypoints_2d, p["keypoints_2d"]) and np.array_equal(ann.keypoints_3d, p["keypoints_3d"])
        assert np.array_equal(ann.global_orient, p["body_pose"][:3]) and np.array_equal(ann.body_pose, p["body_pose"][3:])
        assert np.array_equal(ann.betas, p["betas"]) and ann.has_body_pose == ann.has_betas == 1
        assert np.array_equal(ann.focal_length, p["focal_length"])
        assert np.allclose(ann.size, p["scale"] * 200)
        assert ann.mask is not None and ann.mask.shape == image.shape[:2] and ann.mask.any()


@pytest.mark.parametrize("augment", [None, HMR2_AUGMENT, SMPLPOSE_AUGMENT], ids=["plain", "hmr2", "smplpose"])
def test_every_sample_projects_onto_its_keypoints(synth_dir, augment):
    rng = np.random.default_rng(0)
    size = 224 if augment is SMPLPOSE_AUGMENT else 256
    reader = TarReader(str(synth_dir / "train"), filters=FilterConfig(enabled=False))
    n = 0
    for image, ann in reader.iterate():
        for _ in range(3):
            s = make_sample(image, ann, size, augment, rng)
            assert s.has_camera == 1
            assert np.abs(_project(s) - s.keypoints_2d[:, :2]).max() < 0.5, s.key
            n += 1
    assert n >= 30


def test_eval_npz_equals_the_tar_layout_fields(synth_dir):
    reader = NpzReader(synth_dir / "eval" / "synth_eval.npz")
    ds = SampleDataset(reader, image_size=256, bbox_shape=(192, 256))
    samples = list(ds)
    assert len(samples) == len(reader) >= 2 and not ds.skips.counts()
    for s in samples:
        visible = s.keypoints_3d[:, 3] > 0  # the npz quirk drops OpenPose joints 1-14 from 3D
        assert np.abs(_project(s) - s.keypoints_2d[:, :2])[visible].max() < 0.5


def test_hmr_data_check_reports_and_draws(synth_dir, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert main(["data", "check", str(synth_dir), "--out", str(sheet), "--num", "6"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "synth_eval" in out and "skipped: none" in out
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hmr_data_check_exit_code_on_a_damaged_shard(synth_dir, tmp_path, capsys):
    bad = tmp_path / "tars"
    bad.mkdir()
    data = (synth_dir / "train" / "000000.tar").read_bytes()
    (bad / "000000.tar").write_bytes(data)
    (bad / "000001.tar").write_bytes(data[: len(data) // 2])
    assert main(["data", "check", str(bad / "{000000..000001}.tar"), "--out", str(tmp_path / "s.png")]) == 1
    assert "unreadable_shard" in capsys.readouterr().out


def test_hmr_data_synth_cli(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["data", "synth", "--out", str(out), "--num", "3", "--image-size", "128x96", "--eval-fraction", "0",
                 "--people-per-image", "2", "--seed", "5"]) == 0  # fmt: skip
    assert re.search(r"3 train images \([4-6] people\) in 1 shards", capsys.readouterr().out)  # tiny people unlabelled
    assert len(list(TarReader(str(out / "train"), filters=FilterConfig(enabled=False)).iterate())) >= 4
    assert main(["data", "synth", "--out", str(out), "--num", "3", "--image-size", "big"]) == 2
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no dataset here" in err or "not found" in err
