"""Training: each family overfits one synthetic batch; hmr train end to end with its MLflow store; a run killed
with SIGKILL resumes to the same steps and weights as an uninterrupted one; a damaged checkpoint falls back."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hmr.data import SampleDataset, collate
from hmr.data.npz import NpzReader
from hmr.data.synth import generate
from hmr.training.config import TrainConfig, load_train_config
from hmr.training.losses import SMPLER_WEIGHTS
from hmr.training.module import MeshRecoveryModule

ROOT = Path(__file__).resolve().parent.parent
TINY_HMR2 = ["model.overrides={backbone: {depth: 1, embed_dim: 64, num_heads: 2}, head: {depth: 1, context_dim: 64, "
             "dim: 128, heads: 2, dim_head: 32, mlp_dim: 128}}"]  # fmt: skip
RUN = ["data.batch_size=2", "data.num_workers=0", "trainer.checkpoint_every=2", "trainer.val_every=2",
       "trainer.val_batches=1", "trainer.log_every=1", "logging.val_images=2"]  # fmt: skip


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("trainset")
    generate(out, 12, seed=4, image_size=(200, 160), eval_fraction=0.25, people_per_image=1, shard_size=4, progress=False)
    return out


def _batch(synth, size, n=4):
    ds = SampleDataset(NpzReader(synth / "eval" / "synth_eval.npz"), image_size=size)
    return collate(list(ds)[:n])


@pytest.mark.parametrize("family", ["hmr2", "smplpose"])
def test_each_family_overfits_one_batch(synth, family):
    torch.manual_seed(0)
    if family == "hmr2":
        cfg = load_train_config("hmr2_vit_s", TINY_HMR2 + ["loss.keypoints_3d=0.05"])
        lr, size = 1e-3, 256
    else:
        cfg = load_train_config("smplpose_w32_stage2", ["model.init=", "model.overrides={backbone: {stem_blocks: 1, "
                                "num_modules: [1, 1, 1], num_blocks: 1}, transformer: {dim: 32, heads: 2, mlp_dim: 64, "
                                "num_blocks: 1, units_per_block: 1, dropout: 0.0, attn_dropout: 0.0}, "
                                "regressor: {hidden: 64, dropout: 0.0}}"])  # fmt: skip
        lr, size = 1e-3, 224
        assert cfg.loss == SMPLER_WEIGHTS
    module = MeshRecoveryModule(cfg)
    batch = _batch(synth, size)
    opt = torch.optim.Adam(module.model.parameters(), lr=lr)
    losses = []
    for _ in range(120):
        total, terms, _ = module.forward_losses(batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1], {k: float(v) for k, v in terms.items()})


def _train_cmd(synth, run_dir, name, steps, extra=()):
    return [sys.executable, "-m", "hmr.cli", "train", "--config", "hmr2_vit_s", f"data.train={synth}",
            f"data.val={synth}", f"trainer.max_steps={steps}", f"logging.run_dir={run_dir}",
            f"logging.run_name={name}", *TINY_HMR2, *RUN, *extra]  # fmt: skip


def _env(tmp):
    return {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}",
            "PYTHONPATH": str(ROOT)}  # fmt: skip


def _weights(path):
    from hmr.models.weights import read_safetensors

    return read_safetensors(path)[0]


def _history(uri, run_id, key):
    from mlflow.tracking import MlflowClient

    return {m.step: m.value for m in sorted(MlflowClient(uri).get_metric_history(run_id, key), key=lambda m: m.timestamp)}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(synth, tmp_path):
    env = _env(tmp_path)
    uri = env["MLFLOW_TRACKING_URI"]
    runs = tmp_path / "runs"
    # Drop-path 0.8 on the second block: training draws random numbers; a learning rate large enough that a
    # different draw (or sample) moves the weights by far more than the tolerance.
    random = ["model.overrides.backbone.depth=2", "model.overrides.backbone.drop_path_rate=0.8", "optim.lr=0.001"]
    subprocess.run(_train_cmd(synth, runs, "straight", 6, random), env=env, check=True, capture_output=True, cwd=tmp_path)
    victim = subprocess.Popen(_train_cmd(synth, runs, "killed", 6, random), env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    first = runs / "killed" / "checkpoints" / "step_00000002.ckpt"
    deadline = time.time() + 300
    while not first.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)  # mid-epoch 2: after the first checkpoint, before the end
    victim.wait()
    assert first.exists() and not (runs / "killed" / "model.safetensors").exists()
    finals = [p for p in (runs / "killed" / "checkpoints").glob("*.ckpt") if not p.name.startswith(".")]
    for ckpt in finals:  # under final names only complete files (a temporary one may be left by the kill)
        torch.load(ckpt, map_location="cpu", weights_only=True)
    done = subprocess.run([sys.executable, "-m", "hmr.cli", "train", "--config", "hmr2_vit_s", "--resume",
                           str(runs / "killed")], env=env, capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "6 steps" in done.stdout
    assert not list((runs / "killed" / "checkpoints").glob(".*"))  # an interrupted write's temporary file is gone
    a, b = _weights(runs / "straight" / "model.safetensors"), _weights(runs / "killed" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)
    # The resumed run is the same MLflow run; every step's last value equals the uninterrupted run's.
    ids = {n: (runs / n / "mlflow_run_id.txt").read_text().strip() for n in ("straight", "killed")}
    straight, killed = _history(uri, ids["straight"], "train/loss"), _history(uri, ids["killed"], "train/loss")
    assert sorted(killed) == sorted(straight) and len(straight) >= 3
    for step, value in straight.items():
        assert killed[step] == pytest.approx(value, rel=1e-4), step


def test_hmr_train_end_to_end_logs_to_mlflow(synth, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from hmr.cli import main

    monkeypatch.chdir(tmp_path)  # the embedded store goes to ./mlruns
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["train", "--config", "hmr2_vit_s", f"data.train={synth}", f"--data.val={synth}", "trainer.max_steps=4",
            "logging.run_name=e2e", *TINY_HMR2, *RUN]  # fmt: skip
    assert main(args) == 0
    run_dir = tmp_path / "runs" / "e2e"
    assert (run_dir / "model.safetensors").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    run = client.get_run((run_dir / "mlflow_run_id.txt").read_text().strip())
    assert {"train/loss", "val/mpjpe", "val/pa_mpjpe", "val/pve"} <= set(run.data.metrics)
    assert run.data.params["model.name"] == "hmr2_vit_s"
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "model", "checkpoints", "val_images"} <= top
    assert any(a.path.endswith(".png") for a in client.list_artifacts(run.info.run_id, "val_images"))
    # The trained network loads like any other, for hmr eval / hmr demo.
    from hmr.models import load_model

    assert load_model(run_dir / "model.safetensors").config.name == "hmr2_vit_s"
    with pytest.raises(FileExistsError, match="--resume"):
        from hmr.training.run import train

        train(load_train_config("hmr2_vit_s", [f"data.train={synth}", "logging.run_name=e2e", *TINY_HMR2, *RUN]))


def test_damaged_last_checkpoint_falls_back_to_the_previous(tmp_path):
    from hmr.training.run import pick_checkpoint

    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    torch.save({"global_step": 2}, ckpts / "step_00000002.ckpt")
    torch.save({"global_step": 4}, ckpts / "step_00000004.ckpt")
    (ckpts / "last.ckpt").write_bytes((ckpts / "step_00000004.ckpt").read_bytes()[:100])  # cut short
    with pytest.warns(UserWarning, match="last.ckpt: unreadable checkpoint"):
        assert pick_checkpoint(ckpts) == ckpts / "step_00000004.ckpt"
    (ckpts / "step_00000004.ckpt").write_bytes(b"garbage")
    with pytest.warns(UserWarning):
        assert pick_checkpoint(ckpts) == ckpts / "step_00000002.ckpt"


def test_recipes_load_and_missing_data_fails_with_one_line(tmp_path):
    from hmr.training.config import RECIPES
    from hmr.training.run import train_loaders

    names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    assert {"hmr2_vit_s", "hmr2_vit_h", "smplpose_w32_stage1", "smplpose_w32_stage2", "smplpose_w32_stage3",
            "smplpose_w48_stage1", "smplpose_w48_stage2", "smplpose_w48_stage3"} <= set(names)  # fmt: skip
    for n in names:
        cfg = load_train_config(n)
        assert isinstance(cfg, TrainConfig) and cfg.recipe == n
    cfg = load_train_config("hmr2_vit_h", [f"data.root={tmp_path}"])
    from hmr.data import DatasetLayoutError

    with pytest.raises(DatasetLayoutError, match=r"h36m-train/000000\.tar: shard not found"):
        train_loaders(cfg, adversarial=False)
    from hmr.training.run import train

    cfg.logging.run_dir = str(tmp_path / "runs")
    with pytest.raises(DatasetLayoutError, match=r"shard not found.*docs/training\.md"):
        train(cfg)  # before any model is built (ViT-H would take minutes) or run folder made
    assert not (tmp_path / "runs").exists()
    with pytest.raises(FileNotFoundError, match="not a shipped recipe"):
        load_train_config("nope")
    assert np.isclose(sum(s.weight for s in load_train_config("hmr2_vit_h").data.train), 1.0)


@pytest.mark.slow
def test_ddp_matches_one_process_on_the_combined_batches(tmp_path):
    """2 CPU processes (gloo) on half batches each end with the weights of 1 process on the whole batches, at the
    same learning rate (the losses are sums over the batch, as 4D-Humans' are)."""
    out = tmp_path / "set"
    generate(out, 12, seed=6, image_size=(200, 160), eval_fraction=1.0, people_per_image=1, progress=False)
    npz = str(out / "eval" / "synth_eval.npz")
    script = str(ROOT / "tests" / "ddp_train_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(29500 + os.getpid() % 1000), script, "ddp", npz, str(tmp_path / "ddp.pt")],
                         env=env, capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = subprocess.run([sys.executable, script, "single", npz, str(tmp_path / "one.pt")], env=env,
                         capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("ddp.pt", "one.pt"))
    start = MeshRecoveryModule(load_train_config("hmr2_vit_s", __import__("tests.ddp_train_script").ddp_train_script.TINY))
    moved = 0
    for k, v in a.items():
        torch.testing.assert_close(v, b[k], rtol=1e-4, atol=1e-6, msg=k)
        moved += not torch.equal(v, start.model.state_dict()[k]) if v.is_floating_point() else 0
    assert moved > 10  # training changed the weights (the comparison is not between two untouched copies)


def test_ranks_read_disjoint_shards(synth, monkeypatch):
    """Each DDP rank reads its own share of a dataset (map-style readers by index, tars by shard); together
    they read everything once."""
    from hmr.data import datasets as D
    from hmr.data.tars import TarReader

    npz = synth / "eval" / "synth_eval.npz"
    keys = {}
    for rank in (0, 1):
        monkeypatch.setattr(D, "rank_world", lambda r=rank: (r, 2))
        keys[rank] = [s.key for s in SampleDataset(NpzReader(npz), 64)]
    assert keys[0] and keys[1] and not set(keys[0]) & set(keys[1])
    monkeypatch.setattr(D, "rank_world", lambda: (0, 1))
    assert sorted(keys[0] + keys[1]) == sorted(s.key for s in SampleDataset(NpzReader(npz), 64))
    tars = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        tars[rank] = {a.key for _, a in TarReader(str(synth / "train")).iterate(shuffle=True)}
    assert tars[0] and tars[1] and not tars[0] & tars[1]
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert tars[0] | tars[1] == {a.key for _, a in TarReader(str(synth / "train")).iterate()}


@pytest.mark.slow
def test_the_documented_smoke_command_works_as_written(synth, tmp_path):
    """``hmr train --config hmr2_vit_s data.train=DIR data.val=DIR trainer.max_steps=4``, from any folder: the
    recipe's full-size network, batch and workers."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "hmr.cli", "train", "--config", "hmr2_vit_s", f"data.train={synth}",
                           f"data.val={synth}", "trainer.max_steps=4"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert ": 4 steps;" in done.stdout
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "model.safetensors").is_file() and (tmp_path / "mlruns" / "mlflow.db").is_file()


def test_accumulating_two_half_batches_is_one_whole_batch(synth, tmp_path, monkeypatch):
    from hmr.training.run import train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    common = [f"data.train={synth}", "data.val=[]", "data.num_workers=0", "trainer.max_steps=2", "trainer.checkpoint_every=2",
              "trainer.val_every=100", "optim.optimizer=sgd", "optim.lr=0.0001", "optim.weight_decay=0",
              f"logging.run_dir={tmp_path}", "model.overrides={backbone: {depth: 1, embed_dim: 64, num_heads: 2, "
              "drop_path_rate: 0.0}, head: {depth: 1, context_dim: 64, dim: 128, heads: 2, dim_head: 32, mlp_dim: 128}}"]
    whole = train(load_train_config("hmr2_vit_s", [*common, "data.batch_size=4", "logging.run_name=whole"]))
    halves = train(load_train_config("hmr2_vit_s", [*common, "data.batch_size=2", "trainer.accumulate=2",
                                                    "logging.run_name=halves"]))  # fmt: skip
    assert whole.global_step == halves.global_step == 2
    a, b = _weights(whole.model_file), _weights(halves.model_file)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)


def test_initialisation_from_vitpose_weights_and_from_a_stage_1_checkpoint(tmp_path):
    """model.backbone_init loads ViTPose-style weights ({'state_dict': {'backbone.*'}}); model.init loads the
    stage-1 baseline's network into the stage-2 model (its keys; the transformer stays new)."""
    from hmr.models import create_model, save_model
    from hmr.training.module import build_network

    cfg = load_train_config("hmr2_vit_s", TINY_HMR2)
    donor = create_model("hmr2_vit_s", **cfg.model.overrides)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in donor.backbone.state_dict().items()}}, tmp_path / "vitpose.pth")
    cfg.model.backbone_init = str(tmp_path / "vitpose.pth")
    net = build_network(cfg, donor.body_model)
    for k, v in donor.backbone.state_dict().items():
        assert torch.equal(net.backbone.state_dict()[k], v), k
    small = {"backbone": {"stem_blocks": 1, "num_modules": [1, 1, 1], "num_blocks": 1}}
    stage1 = create_model("smplpose_w32_baseline", **small)
    save_model(stage1, tmp_path / "stage1.safetensors")
    cfg2 = load_train_config("smplpose_w32_stage2", [f"model.init={tmp_path / 'stage1.safetensors'}",
                                                     "model.overrides={backbone: {stem_blocks: 1, num_modules: [1, 1, 1], num_blocks: 1}}"])  # fmt: skip
    full = build_network(cfg2, stage1.body_model)
    shared = set(stage1.state_dict()) & set(full.state_dict())
    assert len(shared) > 100 and any("transformer" in k for k in set(full.state_dict()) - shared)
    for k in shared:
        assert torch.equal(full.state_dict()[k], stage1.state_dict()[k]), k
