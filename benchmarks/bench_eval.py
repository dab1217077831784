"""Evaluation speed and the out-of-the-box fitting pipeline's accuracy on a synthetic evaluation set.

A synthetic evaluation set (``hmr.data.synth``, seed 0, 640x480, 1-3 people per image, all in the eval split) is
written to a temporary folder. Rows: ``hmr.evaluation.evaluate`` of ``hmr2_vit_s`` (random weights: speed
only, its errors mean nothing) at batch 16 on the CPU, and of the fitting pipeline (``"fit"``: BlazePose on
each crop, then the keypoint fit with the crop's true camera), whose numbers are the ones to track. Prints a
markdown section; ``--write`` puts it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import machine, table, write_section  # noqa: E402
from hmr.data.synth import generate  # noqa: E402
from hmr.evaluation import evaluate  # noqa: E402
from hmr.models import create_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--network-samples", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        s = generate(tmp, args.images, seed=0, image_size=(640, 480), eval_fraction=1.0, progress=False)
        npz = str(Path(tmp, "eval", "synth_eval.npz"))
        net = evaluate(create_model("hmr2_vit_s"), npz, batch_size=16, limit=args.network_samples, progress=False)
        fit = evaluate("fit", npz, progress=False)
    for r in (net, fit):
        m = r.metrics
        rows.append([r.model, f"{r.scored}/{r.samples}", f"{r.samples_per_second:.2f}",
                     *(f"{m[k]:.1f}" for k in ("mpjpe", "pa_mpjpe", "pve", "pa_pve")),
                     *(f"{m[k]:.3f}" for k in ("pck@0.05", "pck@0.1"))])  # fmt: skip
    rows[0][3:] = ["(random weights)"] + [""] * 5
    text = (
        "## Evaluation (`benchmarks/bench_eval.py`)\n\n"
        f"`hmr.evaluation.evaluate` on a synthetic evaluation set ({args.images} images of 640x480, "
        f"{s.eval_people} people, `hmr data synth` seed 0), protocol `synthetic` (docs/evaluation.md): MPJPE and "
        "PA-MPJPE over HMR 2.0's 14 joints centred on its pelvis, PVE / PA-PVE over the mesh, PCK of the 44 "
        "keypoints at 0.05 / 0.1 of the box. `hmr2_vit_s`: the full-size network with random weights, batch 16 "
        f"(speed only); `fit`: the out-of-the-box pipeline (BlazePose on each crop, then the keypoint fit with the "
        f"crop's true camera); `scored`: people with a prediction (BlazePose can miss one). CPU: {machine()}, "
        f"os.cpu_count() = {os.cpu_count()}, torch threads {args.threads}. Errors in mm.\n\n"
        + table(["model", "scored", "samples/s", "MPJPE", "PA-MPJPE", "PVE", "PA-PVE", "PCK@0.05", "PCK@0.1"], rows)
    )
    print(text)
    if args.write:
        write_section("eval", text)


if __name__ == "__main__":
    main()
