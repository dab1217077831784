"""Threads per pipeline stage (``threads.fitting``, ``threads.network``): one photo's compute on a quiet
machine and while another process keeps the cores busy, for each thread count of the fit.

Per setting: a warm ``Pipeline`` (default config but for the thread counts), median and worst of ``--reps``
calls on each picture (``examples/astronaut.jpg``: one person; ``examples/basketball1.png``: two). The busy
case runs a second process doing float32 matrix products on 2 threads, as another job on a shared
machine would. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.report import machine, table, write_section  # noqa: E402

PICTURES = ("astronaut.jpg", "basketball1.png")
BUSY = "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n"


def seconds(fitting: int, reps: int) -> dict[str, list[float]]:
    from hmr.io.images import read_image
    from hmr.pipeline import Pipeline, PipelineConfig
    from hmr.pipeline.config import ThreadsSection

    pipe = Pipeline(PipelineConfig(threads=ThreadsSection(fitting=fitting)))
    out = {}
    for name in PICTURES:
        image = read_image(ROOT / "examples" / name)
        pipe(image)  # warm-up: models, graphs, caches
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            pipe(image)
            times.append(time.perf_counter() - start)
        out[name] = times
    return out


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for busy in (False, True):
        other = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
        try:
            time.sleep(1 if busy else 0)
            for fitting in (1, 0):
                res = seconds(fitting, args.reps)
                row = ["busy" if busy else "quiet", fitting or f"0 (= {torch.get_num_threads()})"]
                for name in PICTURES:
                    row.append(f"{statistics.median(res[name]):.2f} / {max(res[name]):.2f}")
                rows.append(row)
                print(row, flush=True)
        finally:
            if other is not None:
                other.kill()
                other.wait()
    write_section("threads", f"""## Threads per stage (`benchmarks/bench_threads.py`)

One picture through a warm default `Pipeline` (detection, BlazePose, fit with 3D landmarks; no writing), s,
median / worst of {args.reps}, by `threads.fitting` (the fit's torch threads; 0 = torch's default, one per core);
`busy`: while another process runs float32 matrix products on 2 threads. CPU: {machine()}; load average
before the run {os.getloadavg()[1]:.1f} (5 min).

{table(["machine", "threads.fitting", *PICTURES], rows)}
""")


if __name__ == "__main__":
    main()
