"""evaluate() end to end on a synthetic set: the truth scores 0, a known error scores what it should, the
fitting pipeline and hmr eval run and report; resuming, set names and licensed-file errors."""

import json
import os

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hmr.body import KeypointSetUnavailableError, load_body_model
from hmr.cli import main
from hmr.data import DatasetLayoutError
from hmr.data.synth import generate
from hmr.evaluation import Predictor, evaluate
from hmr.evaluation.protocols import HMR2_EVAL_JOINTS, HMR2_PELVIS
from hmr.geometry import axis_angle_to_matrix, square_side
from hmr.outputs import MeshOutput


@pytest.fixture(scope="module")
def body():
    return load_body_model()


@pytest.fixture(scope="module")
def synth_npz(tmp_path_factory):
    out = tmp_path_factory.mktemp("evalset")
    generate(out, 5, seed=2, image_size=(240, 200), eval_fraction=1.0, people_per_image=1, progress=False)
    return out / "eval" / "synth_eval.npz"


class Truth(Predictor):
    """The ground truth as a prediction, optionally turned about the camera's optical axis by ``roll_deg`` and
    with its 2D keypoints shifted by ``shift`` (normalised crop units)."""

    name = "truth"

    def __init__(self, body, roll_deg=0.0, shift=0.0):
        self.body_model, self.roll, self.shift = body, roll_deg, shift

    def __call__(self, b):
        roll = torch.from_numpy(Rotation.from_euler("z", self.roll, degrees=True).as_matrix())
        go = (roll @ axis_angle_to_matrix(b.global_orient.double()))[:, None].float()
        bp = axis_angle_to_matrix(b.body_pose.double().reshape(-1, 23, 3)).float()
        kp2d = b.keypoints_2d[..., :2] / b.images.shape[-1] - 0.5 + self.shift
        n = len(b)
        return MeshOutput(go, bp, b.betas, torch.zeros(n, 1, 3), torch.zeros(n, 44, 3), keypoints_2d=kp2d), torch.ones(n, dtype=torch.bool)


def test_the_truth_scores_zero(body, synth_npz):
    r = evaluate(Truth(body), str(synth_npz), progress=False)
    assert r.protocol == "synthetic" and r.samples == r.scored >= 5
    for k in ("mpjpe", "pa_mpjpe", "pve", "pa_pve"):
        assert r.metrics[k] < 1e-2, (k, r.metrics[k])
    assert r.metrics["pck@0.05"] == 1.0 and r.metrics["pck@0.1"] == 1.0
    assert set(r.per_joint["mpjpe"]) >= {"right_ankle", "head_h36m"} and len(r.per_joint["pck@0.05"]) == 44


def test_a_known_error_scores_what_it_should(body, synth_npz, tmp_path):
    """A 10° roll of the whole body about the optical axis: MPJPE = the mean over the 14 joints of how far that
    rotation moves each (pelvis-relative) true joint; PA-MPJPE removes it. 2D keypoints shifted by 0.08 of the
    crop, i.e. 0.08 x bbox_expand_factor of the annotated box (crop side over the box's larger side): PCK@0.05
    never holds, PCK@0.1 holds for tall boxes (factor 1) and not for wide ones (padded to 3:4, factor 4/3)."""
    from hmr.data.npz import NpzReader

    data = dict(np.load(synth_npz))
    data["scale"][:2] = data["scale"][:2, ::-1] * [1.5, 1.0]  # two boxes made wide (w = 1.5 x the old height)
    wide = tmp_path / "images"
    wide.symlink_to(synth_npz.parent / "images")
    np.savez(tmp_path / "synth_wide.npz", **data)
    r = evaluate(Truth(body, roll_deg=10.0, shift=0.08 / np.sqrt(2)), str(tmp_path / "synth_wide.npz"), progress=False)
    reader = NpzReader(tmp_path / "synth_wide.npz")
    rot = Rotation.from_euler("z", 10.0, degrees=True)
    expected, factors = [], []
    for i in range(len(reader)):
        ann = reader.read(i)[1]
        kp = ann.keypoints_3d[:, :3].astype(np.float64)
        rel = kp[list(HMR2_EVAL_JOINTS)] - kp[HMR2_PELVIS]
        expected.append(1000 * np.linalg.norm(rot.apply(rel) - rel, axis=-1).mean())
        factors.append(square_side(ann.size, (192, 256)) / square_side(ann.size))
    assert r.metrics["mpjpe"] == pytest.approx(np.mean(expected), abs=0.05)
    assert r.metrics["pa_mpjpe"] < 1e-2 and r.metrics["pa_pve"] < 1e-2
    assert r.metrics["pve"] > 10
    assert r.metrics["pck@0.05"] == 0.0
    assert r.metrics["pck@0.1"] == pytest.approx(np.mean([0.08 * f < 0.1 for f in factors]))
    assert 0 < r.metrics["pck@0.1"] < 1


def test_resume_scores_only_what_is_left(body, synth_npz, tmp_path):
    state = tmp_path / "state.npz"
    first = evaluate(Truth(body, roll_deg=5.0), str(synth_npz), batch_size=2, limit=2, state_path=state, progress=False)
    assert first.samples == 2 and state.is_file()
    calls = []

    class Counting(Truth):
        def __call__(self, b):
            calls.append(len(b))
            return super().__call__(b)

    full = evaluate(Counting(body, roll_deg=5.0), str(synth_npz), batch_size=2, state_path=state, progress=False)
    once = evaluate(Truth(body, roll_deg=5.0), str(synth_npz), progress=False)
    assert sum(calls) == once.samples - 2
    assert sorted(full.keys) == sorted(once.keys)
    assert full.metrics["mpjpe"] == pytest.approx(once.metrics["mpjpe"], abs=1e-6)
    other = tmp_path / "other.npz"
    evaluate(Truth(body), str(synth_npz), limit=1, state_path=other, progress=False)
    with pytest.raises(ValueError, match="scores of another evaluation"):
        evaluate(Truth(body), str(synth_npz), protocol="hmr2_3d", state_path=other, progress=False)


def test_set_names_and_licensed_files(body, synth_npz, tmp_path, monkeypatch):
    monkeypatch.delenv("HMR_DATA_ROOT", raising=False)
    with pytest.raises(DatasetLayoutError, match=r"3DPW-TEST: no data root; pass --data-root"):
        evaluate(Truth(body), "3DPW-TEST", progress=False)
    with pytest.raises(DatasetLayoutError, match=r"hmr2_evaluation_data/3dpw_test\.npz: not found"):
        evaluate(Truth(body), "3dpw-test", data_root=str(tmp_path), progress=False)
    with pytest.raises(KeypointSetUnavailableError, match="SMPL_NEUTRAL.pkl"):
        evaluate(Truth(body), str(synth_npz), protocol="smpler_3d", progress=False)
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate(Truth(body), str(synth_npz), protocol="nope", progress=False)


def test_hmr_eval_fit_runs_and_reports(synth_npz, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "report"
    assert main(["eval", "--model", "fit", "--dataset", str(synth_npz), "--out", str(out), "--limit", "3",
                 "--mlflow"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "fit on synth_eval (synthetic)" in text and "mpjpe" in text and "mlflow run:" in text
    summary = json.loads((out / "synth_eval__fit.json").read_text())
    assert summary["samples"] == 3 and summary["protocol"] == "synthetic" and "pa_mpjpe" in summary["metrics"]
    assert summary["metrics"]["pck@0.1"] > 0.5  # the fit's keypoints land near the truth (in crop units)
    for name in ("synth_eval__fit.csv", "synth_eval__fit_joints.png", "synth_eval__fit_keypoints.png",
                 "synth_eval__fit_hist.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    assert "MLFLOW_TRACKING_URI" not in os.environ  # mlflow exports it; the next run's default must not change
    assert not list(out.glob(".*.partial.npz"))  # the resume state goes once the report is written
    main(["eval", "--model", "fit", "--dataset", str(synth_npz), "--out", str(out), "--limit", "1"])
    rows = (out / "history.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("time,model,checkpoint_hash,dataset,protocol")


def test_hmr_eval_network_checkpoint(synth_npz, tmp_path, capsys):
    """A (small, untrained) registered network saved as a checkpoint: hmr eval loads it, hashes the file and
    scores it (the numbers of random weights mean nothing; the run must work)."""
    from hmr.models import create_model, save_model

    model = create_model("hmr2_vit_s", backbone={"depth": 1}, head={"depth": 1})
    ckpt = tmp_path / "tiny.safetensors"
    save_model(model, ckpt)
    assert main(["eval", "--model", str(ckpt), "--dataset", str(synth_npz), "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "synth_eval__hmr2_vit_s.json").read_text())
    assert len(summary["checkpoint_hash"]) == 16 and summary["scored"] == summary["samples"]


def test_smpler_protocol_end_to_end_on_a_tsv_set(tmp_path):
    """SMPLer's protocol through evaluate() on a TSV set in METRO's layout, with an SMPL-sized body model: the
    truth scores 0 (H36M joints regressed from the mesh against the dataset's J24 joints, mid-hip centred; PVE
    on pelvis-relative meshes); a roll scores the independently computed mid-hip-centred error."""
    import yaml

    from hmr.body import BodyModel
    from hmr.body.keypoints import KeypointSet
    from hmr.evaluation.protocols import H36M_J17_TO_J14, J24_TO_J14
    from tests.synthetic_smpl import synthetic_smpl_arrays
    from tests.test_data_tsv import write_split, write_tsv

    body = BodyModel.from_arrays(synthetic_smpl_arrays(num_vertices=6890), "smpl-test")
    rng = np.random.default_rng(0)
    reg = rng.random((17, 6890)) * (rng.random((17, 6890)) > 0.995)
    body.add_keypoint_set("h36m17", KeypointSet.from_dense(tuple(f"h{i}" for i in range(17)), None,
                                                           reg / reg.sum(1, keepdims=True), 24))  # fmt: skip
    n = 4
    pose = rng.normal(0, 0.3, (n, 72))
    pose[:, :3] = [np.pi, 0, 0]  # upright in the camera frame
    betas = rng.normal(0, 1, (n, 10))
    with torch.no_grad():
        out = body(torch.tensor(pose[:, :3], dtype=torch.float32), torch.tensor(pose[:, 3:], dtype=torch.float32),
                   torch.tensor(betas, dtype=torch.float32))  # fmt: skip
    h36m = out.keypoints["h36m17"].double().numpy()
    labels = []
    for i in range(n):
        j24 = np.zeros((24, 4))
        j24[list(J24_TO_J14), :3] = h36m[i, list(H36M_J17_TO_J14)]
        j24[list(J24_TO_J14), 3] = 1
        j2d = np.c_[rng.uniform(10, 50, (24, 2)), np.ones(24)]
        labels.append({"center": [32.0, 24.0], "scale": 0.2, "has_2d_joints": 1, "has_3d_joints": 1,
                       "2d_joints": j2d.tolist(), "3d_joints": j24.tolist(), "has_smpl": 1,
                       "pose": pose[i].tolist(), "betas": betas[i].tolist(), "gender": "n"})  # fmt: skip
    root = tmp_path / "3dpw"
    write_split(root / "has_gender", "test", labels)
    write_tsv(root / "has_gender" / "test.linelist.tsv", [[str(r)] for r in range(n)])
    (root / "test_has_gender.yaml").write_text(yaml.safe_dump({k: f"has_gender/test.{k}.tsv" for k in ("img", "hw", "label", "linelist")}))
    r = evaluate(Truth(body), "3DPW-TEST-SMPLER", data_root=str(tmp_path), progress=False)
    assert r.protocol == "smpler_3d" and r.samples == n
    assert r.metrics["mpjpe"] < 1e-2 and r.metrics["pa_mpjpe"] < 1e-2 and r.metrics["pve"] < 1e-2
    rolled = evaluate(Truth(body, roll_deg=10.0), "3DPW-TEST-SMPLER", data_root=str(tmp_path), progress=False)
    rot = Rotation.from_euler("z", 10.0, degrees=True)
    j14 = h36m[:, list(H36M_J17_TO_J14)]
    expected = []
    for j in j14:
        gt = j - j[[2, 3]].mean(0)  # mid-hip centred
        pred = rot.apply(j)
        pred -= pred[[2, 3]].mean(0)
        expected.append(1000 * np.linalg.norm(pred - gt, axis=-1).mean())
    assert rolled.metrics["mpjpe"] == pytest.approx(np.mean(expected), abs=0.05)
    assert rolled.metrics["pa_mpjpe"] < 1e-2
    no_reg = BodyModel.from_arrays(synthetic_smpl_arrays(num_vertices=6890), "smpl-test")
    with pytest.raises(KeypointSetUnavailableError, match="J_regressor_h36m.npy"):
        evaluate(Truth(no_reg), "3DPW-TEST-SMPLER", data_root=str(tmp_path), progress=False)


def test_logging_a_run_leaves_the_default_store_alone(tmp_path, monkeypatch):
    """mlflow.set_tracking_uri exports $MLFLOW_TRACKING_URI; logging one run must not make its store the
    default of the next run in the same process."""
    from hmr.evaluation.report import default_tracking_uri, tracking_env

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    import mlflow

    with tracking_env():
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}")
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///kept.db")
    with tracking_env():
        mlflow.set_tracking_uri("sqlite:///changed.db")
    assert default_tracking_uri() == "sqlite:///kept.db"
