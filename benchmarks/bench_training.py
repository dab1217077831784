"""Training speed on the CPU: steps/s, samples/s and peak memory of one optimisation step of each family.

A small synthetic set (``hmr.data.synth``, seed 0, 224x224 images, 1-3 people each) is written once to a temporary
folder. Each row runs in a fresh subprocess with ``torch.set_num_threads(2)``:

- ``step`` rows: ``MeshRecoveryModule.forward_losses`` on one collated batch of the set's crops (the recipe's crop
  size and augmentation-free crops), ``backward`` and the recipe's optimiser step (gradient clipping where the
  recipe has it), in a plain loop: the training step itself, no data loading, no Lightning. Warm-up steps are
  not timed. No mocap rows, so HMR 2.0's discriminator is not stepped (``train()`` drops it without
  ``data.mocap`` too).
- the ``train()`` row: the whole ``hmr.training.run.train`` path (Lightning, the DataLoader decoding and
  augmenting the tars with 0 workers, MLflow into a temporary store, one checkpoint, the final validation);
  steps/s is timed between the ends of the network updates after the warm-up, so data loading between steps
  counts but start-up, checkpoint and validation do not (their total is in the `train() wall` column).

Configs: ``tiny`` HMR 2.0 = ``hmr2_vit_s`` with tests/test_training.py's ``TINY_HMR2`` (1-block ViT 64 wide,
1-block head); ``tiny`` SMPL-Pose = ``smplpose_w32_stage2`` with a small HRNet-W32 (``stem_blocks 1,
num_modules [1, 1, 1], num_blocks 1``) and a 1-block transformer 32 wide, both additions on; ``full`` = the
recipes' networks as registered. Random weights (speed does not depend on them). Memory: ``VmHWM`` (peak RSS)
of the row's process, which includes Python, torch and the body model, and its increase over the RSS before
the first step. Prints a markdown section; ``--write`` puts it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.report import machine, table, write_section  # noqa: E402

TINY_HMR2 = ("model.overrides={backbone: {depth: 1, embed_dim: 64, num_heads: 2}, head: {depth: 1, context_dim: 64, "
             "dim: 128, heads: 2, dim_head: 32, mlp_dim: 128}}")  # fmt: skip
TINY_SMPLPOSE = ("model.overrides={backbone: {stem_blocks: 1, num_modules: [1, 1, 1], num_blocks: 1}, transformer: "
                 "{dim: 32, heads: 2, mlp_dim: 64, num_blocks: 1, units_per_block: 1, dropout: 0.0, "
                 "attn_dropout: 0.0}, regressor: {hidden: 64, dropout: 0.0}}")  # fmt: skip
# name -> (kind, recipe, overrides, warm-up steps, timed steps)
CASES = {
    "hmr2_vit_s tiny": ("step", "hmr2_vit_s", [TINY_HMR2], 3, 20),
    "smplpose_w32 tiny": ("step", "smplpose_w32_stage2", ["model.init=", TINY_SMPLPOSE], 3, 20),
    "hmr2_vit_s tiny, train()": ("train", "hmr2_vit_s", [TINY_HMR2], 3, 20),
    "hmr2_vit_s full": ("step", "hmr2_vit_s", [], 1, 2),
    "smplpose_w32 full": ("step", "smplpose_w32_stage2", ["model.init="], 1, 2),
}


HEADER = ["config", "params", "batch", "warm-up + timed steps", "steps/s", "steps/s (mean)", "samples/s", "ms / step",
          "best ms / step", "CPU ms / step", "train() wall (s)", "peak RSS (MiB)", "step RSS increase (MiB)", "load avg"]  # fmt: skip


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _step_row(cfg, synth: Path, batch: int, warm: int, steps: int) -> dict:
    from hmr.data import SampleDataset, collate
    from hmr.data.npz import NpzReader
    from hmr.training.module import MeshRecoveryModule

    module = MeshRecoveryModule(cfg)
    module.train()
    ds = SampleDataset(NpzReader(synth / "eval" / "synth_eval.npz"), image_size=cfg.data.image_size)
    crops = list(ds)
    data = collate([crops[i % len(crops)] for i in range(batch)])
    opt = module.configure_optimizers()[0]
    params = list(module.model.parameters())
    rss_before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak mark from here on: the training steps
    times, cpu = [], []
    for _ in range(warm + steps):
        t0, c0 = time.perf_counter(), time.process_time()
        total, _, _ = module.forward_losses(data)
        opt.zero_grad()
        total.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        opt.step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"params": sum(p.numel() for p in params), "step_s": times[warm:], "cpu_s": cpu[warm:], "total_wall": None,
            "peak_mib": _status_kib("VmHWM") / 1024, "delta_mib": (_status_kib("VmHWM") - rss_before) / 1024}  # fmt: skip


def _train_row(cfg, warm: int, steps: int, tmp: Path) -> dict:
    from hmr.training import module as module_mod
    from hmr.training.run import train

    ends: list[tuple[float, float]] = []
    original = module_mod.MeshRecoveryModule.training_step

    def timed(self, *a, **k):
        out = original(self, *a, **k)
        ends.append((time.perf_counter(), time.process_time()))
        return out

    module_mod.MeshRecoveryModule.training_step = timed
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    t0 = time.perf_counter()
    result = train(cfg)
    total = time.perf_counter() - t0
    from hmr.models import load_model

    n = sum(p.numel() for p in load_model(result.model_file).parameters())
    step = [b[0] - a[0] for a, b in zip(ends[warm - 1 :], ends[warm:], strict=False)]
    cpu = [b[1] - a[1] for a, b in zip(ends[warm - 1 :], ends[warm:], strict=False)]
    return {"params": n, "step_s": step, "cpu_s": cpu, "total_wall": total,
            "peak_mib": _status_kib("VmHWM") / 1024, "delta_mib": None}  # fmt: skip


def measure(name: str, synth: str, batch: int, threads: int) -> dict:
    from hmr.training.config import load_train_config

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    kind, recipe, overrides, warm, steps = CASES[name]
    tmp = Path(tempfile.mkdtemp(prefix="bench_training_"))
    common = [f"data.batch_size={batch}", "data.num_workers=0"]
    if kind == "train":
        common += [f"data.train={synth}", f"data.val={synth}", f"trainer.max_steps={warm + steps}",
                   f"trainer.checkpoint_every={warm + steps}", f"trainer.val_every={warm + steps}",
                   "trainer.val_batches=1", "logging.val_images=0", f"logging.run_dir={tmp / 'runs'}",
                   "logging.run_name=bench"]  # fmt: skip
    cfg = load_train_config(recipe, [*overrides, *common])
    if kind == "step":
        return _step_row(cfg, Path(synth), batch, warm, steps)
    return _train_row(cfg, warm, steps, tmp)


def _in_subprocess(name: str, synth: str, batch: int, threads: int) -> dict:
    load = os.getloadavg()[0]
    done = subprocess.run([sys.executable, __file__, "--child", name, synth, str(batch), str(threads)],
                          capture_output=True, text=True, cwd=tempfile.gettempdir())  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"{name}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load": load}


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--only", nargs="*", default=None, help="run only these rows (names as in the table)")
    ap.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    args = ap.parse_args()
    from hmr.data.synth import generate

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        s = generate(tmp, args.images, seed=0, image_size=(224, 224), eval_fraction=0.5, shard_size=6,
                     progress=False)  # fmt: skip
        for name in args.only or CASES:
            r = _in_subprocess(name, tmp, args.batch_size, args.threads)
            print(name, r, file=sys.stderr)
            med, cpu = statistics.median(r["step_s"]), statistics.median(r["cpu_s"])
            rate, mean_rate = 1 / med, len(r["step_s"]) / sum(r["step_s"])
            _, _, _, warm, _ = CASES[name]
            rows.append([name, f"{r['params'] / 1e6:.2f} M", args.batch_size, f"{warm} + {len(r['step_s'])}",
                         f"{rate:.3g}", f"{mean_rate:.3g}", f"{rate * args.batch_size:.3g}", f"{1000 * med:.0f}",
                         f"{1000 * min(r['step_s']):.0f}", f"{1000 * cpu:.0f}",
                         f"{r['total_wall']:.1f}" if r["total_wall"] is not None else "",
                         f"{r['peak_mib']:.0f}", f"{r['delta_mib']:.0f}" if r["delta_mib"] is not None else "",
                         f"{r['load']:.1f}"])  # fmt: skip
    text = (
        "## Training speed (`benchmarks/bench_training.py`)\n\n"
        "**No GPU was lent to this task; GPU throughput, bf16 and the 4-minute hmr2_vit_s GPU run are not "
        "measured.** Everything below is CPU only.\n\n"
        f"One optimisation step (forward, losses, backward, optimiser) at batch {args.batch_size}, float32, CPU: "
        f"{machine()} (torch threads {args.threads} per process), one fresh process per row. `steps/s` = 1 / median "
        "step time over the timed steps (robust to the other jobs on these cores); `steps/s (mean)` = timed steps / "
        "their total time; `samples/s` = batch x `steps/s`; `best ms / step`: the fastest timed step (closest to an unshared machine); `CPU ms / step`: median process CPU time per step (all "
        "threads), which waiting for a busy core does not inflate. `step` rows: "
        "`MeshRecoveryModule.forward_losses` + backward + the recipe's optimiser (AdamW with gradient clipping 1.0 "
        "for `hmr2_vit_s`, Adam for `smplpose_w32_stage2`) in a plain loop on one collated batch of synthetic crops "
        "(256x256 for HMR 2.0, 224x224 for SMPL-Pose; no data loading, no discriminator: no mocap). "
        "`train()`: the full `hmr.training.run.train` path (Lightning, DataLoader with 0 workers decoding and "
        f"augmenting {s.train_people} people of a `hmr data synth` set, {args.images} images of 224x224, seed 0; "
        "MLflow in a temporary sqlite store); its steps/s is timed between network updates after the warm-up "
        "(data loading included), `train() wall` is the whole call (start-up, checkpoint, 1 validation batch). "
        "`tiny` HMR 2.0: 1-block ViT 64 wide + 1-block head (tests' `TINY_HMR2`); `tiny` SMPL-Pose: HRNet-W32 "
        "with 1 stem block, 1 module per stage, 1 block per branch + a 1-block, 32-wide transformer, both "
        "additions on; `full`: the registered networks. Random weights. Memory: peak RSS (`VmHWM`) of the "
        "row's process (Python, torch and the bundled body model included) and, for `step` rows, its increase "
        "over the RSS before the first step (activations, gradients, optimiser state). `load avg`: 1-minute load "
        "average when the row started (the 2 cores are shared with other jobs, so the numbers vary with it).\n\n"
        + table(HEADER, rows)
    )
    print(text)
    if args.write:
        write_section("training", text)


if __name__ == "__main__":
    main()
