"""Body-model forward and forward+backward vs smplx, float32, CPU. Writes docs/benchmarks.md.

Uses a synthetic file with SMPL's exact sizes (6890 vertices, 207 pose correctives, 10 betas), since
the licensed SMPL file is not available; speed does not depend on the values.
"""

from __future__ import annotations

import pickle
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import machine, table, write_section  # noqa: E402
from hmr.body import BodyModel  # noqa: E402
from tests.synthetic_smpl import synthetic_smpl_arrays  # noqa: E402


def _time(fn, min_time=1.0, min_reps=3) -> float:
    fn()
    reps, start = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < min_time:
        fn()
        reps += 1
    return (time.perf_counter() - start) / reps * 1000


def main() -> None:
    import smplx

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "SMPL_NEUTRAL.pkl"
        path.write_bytes(pickle.dumps(synthetic_smpl_arrays(num_vertices=6890), protocol=2))
        ours = BodyModel.from_file(path)
        ref = smplx.SMPL(str(path))
    rows = []
    for bsz in (1, 64, 512):
        inp = dict(
            global_orient=torch.randn(bsz, 3) * 0.5,
            body_pose=torch.randn(bsz, 69) * 0.3,
            betas=torch.randn(bsz, 10),
            transl=torch.randn(bsz, 3),
        )
        with torch.no_grad():
            diff = (ours(**inp).vertices - ref(**inp).vertices).abs().max().item()
        res = []
        for model in (ours, ref):
            with torch.no_grad():
                fwd = _time(lambda m=model, i=inp: m(**i))
            grad_inp = {k: v.clone().requires_grad_() for k, v in inp.items()}

            def step(m=model, gi=grad_inp):
                out = m(**gi)
                (out.vertices.sum() + out.joints.sum()).backward()

            res += [fwd, _time(step)]
        rows.append([bsz, f"{res[0]:.2f}", f"{res[2]:.2f}", f"{res[2] / res[0]:.1f}x",
                     f"{res[1]:.2f}", f"{res[3]:.2f}", f"{res[3] / res[1]:.1f}x", f"{diff:.1e}"])  # fmt: skip
        print(rows[-1], flush=True)
    md = (
        "## Body model (`benchmarks/bench_body_model.py`)\n\n"
        f"SMPL-sized model (6890 vertices, 207 pose correctives), float32, CPU: {machine()}. "
        "Times in ms per call; `max |dv|` is the largest vertex difference to smplx in metres.\n\n"
        + table(
            ["batch", "hmr fwd", "smplx fwd", "speed-up", "hmr fwd+bwd", "smplx fwd+bwd", "speed-up", "max |dv|"],
            rows,
        )
    )
    write_section("body-model", md)


if __name__ == "__main__":
    main()
