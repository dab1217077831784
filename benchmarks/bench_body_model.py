"""Body-model forward and forward+backward vs smplx, float32, CPU. Writes docs/benchmarks.md.

Uses a synthetic file with SMPL's exact sizes (6890 vertices, 207 pose correctives, 10 betas), since
the licensed SMPL file is not available; speed does not depend on the values.

The machine may be shared and noisy, so: fixed thread counts, warm-up, and rounds that alternate
hmr and smplx (each round times both, in alternating order). Times are medians over rounds and the
speed-up is the median of the per-round ratios, so a load spike hits both sides of a ratio alike.
Two settings: 2 threads timed by the wall clock (what a user sees on an idle 2-core machine), and
1 thread timed by that thread's CPU time, which time spent waiting for a core shared with other
processes does not inflate (the robust measure of the work each library does).
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import machine, table, write_section  # noqa: E402
from hmr.body import BodyModel  # noqa: E402
from tests.synthetic_smpl import synthetic_smpl_arrays  # noqa: E402

BATCHES = (1, 64, 512)
# (threads, clock, description)
SETTINGS = (
    (2, time.perf_counter, "2 threads, wall clock"),
    (1, time.thread_time, "1 thread, CPU time of the thread"),
)


def _per_call_ms(fn, calls: int, clock) -> float:
    start = clock()
    for _ in range(calls):
        fn()
    return (clock() - start) / calls * 1000


def compare(fn_a, fn_b, budget_s: float, rounds: int, clock=time.perf_counter) -> tuple[float, float, float]:
    """Median ms per call of ``fn_a`` and ``fn_b`` and the median per-round ratio b/a."""
    for _ in range(3):  # warm-up: allocator, oneDNN/MKL kernel caches
        fn_a(), fn_b()
    one = max(_per_call_ms(fn_a, 1, time.perf_counter), _per_call_ms(fn_b, 1, time.perf_counter)) / 1000
    calls = max(1, int(budget_s / rounds / 2 / max(one, 1e-6)))
    ta, tb = [], []
    for r in range(rounds):
        pair = [(fn_a, ta), (fn_b, tb)]
        for fn, out in pair if r % 2 == 0 else pair[::-1]:
            out.append(_per_call_ms(fn, calls, clock))
    ratio = statistics.median(b / a for a, b in zip(ta, tb, strict=True))
    return statistics.median(ta), statistics.median(tb), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=4.0, help="seconds of timing per cell (default 4)")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds per cell (default 9)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    import smplx

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "SMPL_NEUTRAL.pkl"
        path.write_bytes(pickle.dumps(synthetic_smpl_arrays(num_vertices=6890), protocol=2))
        ours = BodyModel.from_file(path)
        ref = smplx.SMPL(str(path))
    inputs = {
        bsz: dict(
            global_orient=torch.randn(bsz, 3) * 0.5,
            body_pose=torch.randn(bsz, 69) * 0.3,
            betas=torch.randn(bsz, 10),
            transl=torch.randn(bsz, 3),
        )
        for bsz in BATCHES
    }
    diffs = {}
    for bsz, inp in inputs.items():
        with torch.no_grad():
            o, r = ours(**inp), ref(**inp)
        diffs[bsz] = max((o.vertices - r.vertices).abs().max().item(), (o.joints - r.joints[:, :24]).abs().max().item())
    load = [os.getloadavg()[0]]
    sections = []
    for threads, clock, what in SETTINGS:
        torch.set_num_threads(threads)
        rows = []
        for bsz, inp in inputs.items():
            grad_inp = {k: v.clone().requires_grad_() for k, v in inp.items()}

            def forward(m, i=inp):
                with torch.no_grad():
                    m(**i)

            def step(m, gi=grad_inp):
                out = m(**gi)
                (out.vertices.sum() + out.joints.sum()).backward()

            row = [bsz]
            for fn in (forward, step):
                t_ours, t_ref, ratio = compare(
                    lambda f=fn: f(ours), lambda f=fn: f(ref), args.budget, args.rounds, clock
                )
                row += [f"{t_ours:.2f}", f"{t_ref:.2f}", f"{ratio:.1f}x"]
            rows.append([*row, f"{diffs[bsz]:.1e}"])
            print(what, rows[-1], flush=True)
        load.append(os.getloadavg()[0])
        header = ["batch", "hmr fwd", "smplx fwd", "speed-up", "hmr fwd+bwd", "smplx fwd+bwd", "speed-up", "max |d|"]
        sections.append(f"**{what}**\n\n" + table(header, rows))
    md = (
        "## Body model (`benchmarks/bench_body_model.py`)\n\n"
        f"SMPL-sized model (6890 vertices, 207 pose correctives, 10 betas), float32, CPU: {machine()}. "
        f"Milliseconds per call, median of {args.rounds} rounds alternating hmr and smplx; the speed-up is the "
        "median of the per-round ratios. fwd+bwd is forward plus backward of `vertices.sum() + joints.sum()` "
        "to all four inputs. `max |d|` is the largest vertex or joint difference to smplx in metres. "
        f"Load average (other processes) during the run: {min(load):.1f} to {max(load):.1f}.\n\n"
        + "\n\n".join(sections)
    )
    if not args.no_write:
        write_section("body-model", md)


if __name__ == "__main__":
    main()
