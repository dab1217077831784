"""Training data pipeline speed: samples/s of decode + augment + collate from 4D-Humans tars.

A synthetic set (640x480 JPEGs, 1-3 people each) is written once to a temporary folder by
``hmr.data.synth``; then ``hmr.data.training_dataset`` reads it with 4D-Humans' augmentation (HMR 2.0 crops,
256x256) or SMPLer's (224x224) through a DataLoader with ``collate``, for 0 and 2 workers. Each row times whole
epochs after a warm-up epoch (the workers' start-up is inside the timing, as in training). Prints a markdown
section; ``--write`` puts it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import machine, table, write_section  # noqa: E402
from hmr.data import HMR2_AUGMENT, SMPLPOSE_AUGMENT, DataConfig, DatasetSpec, collate, training_dataset  # noqa: E402
from hmr.data.synth import generate  # noqa: E402


def epoch(loader) -> int:
    return sum(len(b) for b in loader)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        s = generate(tmp, args.images, seed=0, image_size=(640, 480), shard_size=50, eval_fraction=0.0,
                     progress=False)  # fmt: skip
        for label, size, aug in (("HMR 2.0", 256, HMR2_AUGMENT), ("SMPL-Pose", 224, SMPLPOSE_AUGMENT)):
            for workers in (0, 2):
                cfg = DataConfig(train=(DatasetSpec(path=str(Path(tmp, "train"))),), image_size=size, augment=aug)
                loader = torch.utils.data.DataLoader(training_dataset(cfg), batch_size=args.batch_size,
                                                     num_workers=workers, collate_fn=collate)  # fmt: skip
                epoch(loader)  # warm-up: page cache, imports in workers
                t0 = time.perf_counter()
                n = sum(epoch(loader) for _ in range(args.epochs))
                wall = time.perf_counter() - t0
                rows.append([label, f"{size}x{size}", workers, n, f"{n / wall:.0f}", f"{1000 * wall / n:.1f}"])
    text = (
        "## Training data pipeline (`benchmarks/bench_data_pipeline.py`)\n\n"
        f"4D-Humans tars written by `hmr data synth` ({args.images} images of 640x480, {s.train_people} people, "
        "JPEG q95 with masks); each person decoded (JPEG, restricted unpickler, masks), filtered (low1), "
        f"cropped and augmented, batched by `collate` (batch {args.batch_size}) through a DataLoader; "
        f"{args.epochs} epochs after a warm-up epoch, worker start-up included. CPU: {machine()}, "
        f"os.cpu_count() = {os.cpu_count()}, torch threads 1 per process. Goal: at least 60 samples/s at "
        "256x256 with 2 workers.\n\n"
        + table(["augmentation", "crop", "workers", "samples", "samples/s", "ms/sample"], rows)
    )
    print(text)
    if args.write:
        write_section("data_pipeline", text)


if __name__ == "__main__":
    main()
