"""Synthetic data generation speed (``hmr.data.synth``): images/s written to tar shards, per image size.

Each row runs :func:`hmr.data.synth.generate` into a fresh temporary folder (body model ``hmr-anny-v1``,
1-3 people per image, procedural backgrounds, no eval split), so the time includes posing, rendering with
mask, JPEG and npz encoding and the tar writes. Prints a markdown section; ``--write`` also puts it into
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import machine, table, write_section  # noqa: E402
from hmr.body import load_body_model  # noqa: E402
from hmr.data.synth import generate  # noqa: E402
from hmr.render import Renderer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_body_model()
    with Renderer(64, 64) as r:  # the thread's EGL context is created once, outside the timings
        device = r.device_name
    rows = []
    for size in ((256, 256), (640, 480)):
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            s = generate(tmp, args.images, body_model=model, seed=0, image_size=size, shard_size=20,
                         eval_fraction=0.0, progress=False)  # fmt: skip
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            mb = sum(p.stat().st_size for p in Path(tmp, "train").glob("*.tar")) / 2**20
        rows.append([f"{size[0]}x{size[1]}", args.images, s.train_people, f"{args.images / wall:.1f}",
                     f"{1000 * wall / args.images:.0f}", f"{1000 * cpu / args.images:.0f}",
                     f"{1024 * mb / args.images:.0f}"])  # fmt: skip
    text = (
        "## Synthetic data (`benchmarks/bench_data_synth.py`)\n\n"
        f"`hmr.data.synth.generate`, body model `{model.name}`, 1-3 people per image, procedural backgrounds, "
        f"written to 4D-Humans tar shards (JPEG q95, data.pyd, detection.npz masks). Renderer: {device}. "
        f"CPU: {platform.processor() or platform.machine()} ({machine()}), os.cpu_count() = {os.cpu_count()}, "
        f"torch threads {args.threads}. `ms CPU`: process CPU time per image (Mesa's rasteriser threads "
        "included).\n\n"
        + table(["image", "images", "people", "images/s", "ms/image", "ms CPU/image", "KiB/image"], rows)
    )
    print(text)
    if args.write:
        write_section("data_synth", text)


if __name__ == "__main__":
    main()
