"""Body-model forward and forward+backward vs smplx, float32, CPU. Writes docs/benchmarks.md.

Uses a synthetic file with SMPL's exact sizes (6890 vertices, 207 pose correctives, 10 betas), since
the licensed SMPL file is not available; speed does not depend on the values.

The machine may be shared and noisy, so: fixed thread counts, warm-up, and short rounds that alternate
hmr and smplx (each round times both, in alternating order); each side's time is its best round.
Two settings: 2 threads timed by the wall clock (what a user sees on an idle 2-core machine), and
1 thread timed by that thread's CPU time, which time spent waiting for a core shared with other
processes does not inflate (the robust measure of the work each library does).
"""

from __future__ import annotations

import argparse
import os
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
    """Best ms per call of ``fn_a`` and ``fn_b`` over alternating rounds, and the ratio b/a of those.

    The best round is the one least disturbed by other processes (they only ever add time).
    """
    for _ in range(3):  # warm-up: allocator, oneDNN/MKL kernel caches
        fn_a(), fn_b()
    one = max(_per_call_ms(fn_a, 1, time.perf_counter), _per_call_ms(fn_b, 1, time.perf_counter)) / 1000
    calls = max(1, int(budget_s / rounds / 2 / max(one, 1e-6)))
    ta, tb = [], []
    for r in range(rounds):
        pair = [(fn_a, ta), (fn_b, tb)]
        for fn, out in pair if r % 2 == 0 else pair[::-1]:
            out.append(_per_call_ms(fn, calls, clock))
    return min(ta), min(tb), min(tb) / min(ta)


def products_ms(model: BodyModel, bsz: int, clock, reps: int = 7) -> tuple[float, float]:
    """Best time of hmr's matrix products alone (forward; forward and the two input-gradient products).

    The products are the blend shapes (B, S+P) x (S+P, 3V) and the skinning weights (12B, J+1) x
    (J+1, V); nothing else in skinning needs as much arithmetic, so this is hmr's floor. Timed at
    min(B, 64) and scaled, as hmr skins large batches in chunks.
    """
    from hmr.body import lbs

    c = lbs._consts(model._v_template_flat, model._shapedirs_flat, model.posedirs, model.weights)
    b = min(bsz, 64)
    feat = torch.randn(b, model.num_betas + (0 if model.posedirs is None else model.posedirs.shape[1]))
    per_joint = torch.randn(b * 12, model.num_joints + 1)
    grads = [torch.randn(b, 3 * model.num_vertices), torch.randn(b * 12, model.num_vertices)]

    def products(backward: bool):
        f, p = (t.detach().requires_grad_(backward) for t in (feat, per_joint))
        outs = [
            lbs._Linear.apply(f, c.dirs, c.bias, c.dirs_packed),
            lbs._Linear.apply(p, c.weights, None, c.weights_packed),
        ]
        if backward:
            torch.autograd.backward(outs, grads)

    best = []
    for backward in (False, True):
        products(backward)
        best.append(min(_per_call_ms(lambda bw=backward: products(bw), 1, clock) for _ in range(reps)) * bsz / b)
    return best[0], best[1]


def blend_product_ms(model: BodyModel, bsz: int = 64, reps: int = 7) -> tuple[float, float]:
    """The blend-shape product at ``bsz`` through torch.mm (the generic BLAS path) and through hmr's."""
    from hmr.body import lbs

    dirs = torch.cat([model._shapedirs_flat, model.posedirs], 1)
    c = lbs._consts(model._v_template_flat, model._shapedirs_flat, model.posedirs, model.weights)
    feat = torch.randn(bsz, dirs.shape[1])
    fns = (lambda: torch.mm(feat, dirs.T), lambda: lbs._Linear.apply(feat, c.dirs, c.bias, c.dirs_packed))
    return tuple(min(_per_call_ms(f, 1, time.thread_time) for _ in range(reps)) for f in fns)


def keypoint_sets_note(budget: float, rounds: int) -> str:
    """The bundled model's forward at batch 64 (1 thread, CPU time) computing every keypoint set it defines
    vs none (``keypoint_sets=()``, what callers that need only vertices and joints pass)."""
    model = BodyModel.default()
    torch.set_num_threads(1)
    inp = dict(global_orient=torch.randn(64, 3) * 0.5, body_pose=torch.randn(64, 69) * 0.3, betas=torch.randn(64, 10))

    def run(sets):
        with torch.no_grad():
            model(**inp, keypoint_sets=sets)

    every, none, _ = compare(lambda: run(None), lambda: run(()), budget, rounds, time.thread_time)
    return (f"Bundled `{model.name}` ({model.num_vertices} vertices), batch 64, 1 thread, CPU time: forward with its "
            f"{len(model.keypoint_set_names)} keypoint sets ({', '.join(model.keypoint_set_names)}) {every:.1f} ms, "
            f"with none (`keypoint_sets=()`) {none:.1f} ms ({every / none:.2f}x). `BodyModel.forward` computes only the sets "
            "asked for (default: all); the pipeline, the fit's final meshes and the networks ask for theirs only.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=4.0, help="seconds of timing per cell (default 4)")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds per cell (default 15)")
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
    torch.set_num_threads(SETTINGS[0][0])
    where = machine().rsplit(",", 1)[0]  # thread counts are per table
    load = [os.getloadavg()[0]]
    sections, single, wall64 = [], {}, None
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

            res = []
            for fn in (forward, step):
                res += compare(lambda f=fn: f(ours), lambda f=fn: f(ref), args.budget, args.rounds, clock)
            row = [bsz] + [f"{v:.1f}x" if i % 3 == 2 else f"{v:.2f}" for i, v in enumerate(res)]
            if clock is time.thread_time:
                floor = products_ms(ours, bsz, clock)
                single[bsz] = (*res, *floor)
                row += [f"{floor[0]:.2f}", f"{floor[1]:.2f}", f"{res[1] / floor[0]:.1f}x", f"{res[4] / floor[1]:.1f}x"]
            elif bsz == 64:
                wall64 = res
            rows.append([*row, f"{diffs[bsz]:.1e}"])
            print(what, rows[-1], flush=True)
        load.append(os.getloadavg()[0])
        header = ["batch", "hmr fwd", "smplx fwd", "speed-up", "hmr fwd+bwd", "smplx fwd+bwd", "speed-up"]
        if clock is time.thread_time:
            header += ["products fwd", "products fwd+bwd", "bound fwd", "bound fwd+bwd"]
        header.append("max diff (m)")
        sections.append(f"**{what}**\n\n" + table(header, rows))
    mm_ms, ours_ms = blend_product_ms(ours)
    sets_note = keypoint_sets_note(args.budget, args.rounds)
    md = (
        "## Body model (`benchmarks/bench_body_model.py`)\n\n"
        f"SMPL-sized model (6890 vertices, 207 pose correctives, 10 betas), float32, CPU: {where}. "
        f"Milliseconds per call, best of {args.rounds} rounds alternating hmr and smplx (other processes only "
        "add time, so the best round is the least disturbed); the speed-up is the ratio of those. fwd+bwd is forward plus backward of `vertices.sum() + joints.sum()` "
        "to all four inputs. `max diff` is the largest vertex or joint difference to smplx. "
        f"Load average (other processes) during the run: {min(load):.1f} to {max(load):.1f}; on a loaded "
        "machine the 2-thread wall-clock table mostly measures waiting for a core, the 1-thread CPU-time "
        "table does not.\n\n" + "\n\n".join(sections) + "\n\n" + floor_analysis(single, wall64, mm_ms, ours_ms)
        + "\n\n" + sets_note
    )
    print(md)
    if not args.no_write:
        write_section("body-model", md)


def floor_analysis(single: dict, wall64: list, mm_ms: float, ours_ms: float) -> str:
    """The goal's status and why the speed-up is what it is, from the 1-thread measurements at batch 64."""
    t_fwd, s_fwd, r_fwd, t_fb, s_fb, r_fb, p_fwd, p_fb = single[64]
    v, k, j = 6890, 217, 25
    gflop = (2 * 64 * k * 3 * v + 2 * 64 * 12 * j * v) / 1e9
    short = [what for what, r in (("forward", r_fwd), ("forward+backward", r_fb)) if r < 3]
    return (
        f"**Goal, 3x smplx at batch 64**: 1 thread (CPU time) forward {r_fwd:.2f}x, forward+backward {r_fb:.2f}x; "
        f"2 threads (wall clock, load-dependent) forward {wall64[2]:.2f}x, forward+backward {wall64[5]:.2f}x"
        + (f". On 1 thread the {' and '.join(short)} speed-up is below 3x, see the floor below." if short else ".")
        + "\n\n**Floor.** Skinning's arithmetic is two matrix products, the blend shapes (B x 217) x (217 x 20670) "
        "and the skinning weights (12B x 25) x (25 x 6890), and in backward their two transposes for the "
        f"input gradients: {gflop:.2f} GFLOP forward and {2 * gflop:.2f} forward+backward at batch 64. "
        "`products` times exactly these products as hmr runs them (oneDNN, weights packed once): "
        f"{p_fwd:.2f} ms forward, i.e. {gflop / p_fwd * 1000:.0f} GFLOP/s on one core. `bound` = smplx's time / hmr's product time is the speed-up hmr would reach if "
        f"everything else cost nothing: {s_fwd / p_fwd:.1f}x forward and {s_fb / p_fb:.1f}x forward+backward "
        f"at batch 64. hmr's remaining {t_fwd - p_fwd:.1f} ms forward ({t_fb - p_fb:.1f} ms forward+backward) "
        "are passes over the (B, 3, 4, V) per-vertex transforms and (B, 3, V) vertices (memory-bound: the "
        "transform pass, the final transpose to (B, V, 3), their backward), forward kinematics, rotations "
        "and keypoints. Fusing those passes needs a compiler; torch.compile is not used because it costs "
        "tens of seconds per process and a C++ toolchain at run time. At batch 1 both libraries are bound by "
        "reading the 18 MB of blend shapes once and by per-operation overhead. Part of hmr's lead is the "
        f"kernel: the batch-64 blend-shape product takes {mm_ms:.2f} ms through torch.mm (the BLAS path "
        f"smplx's products take) and {ours_ms:.2f} ms through oneDNN on this CPU; where that BLAS uses "
        "AVX-512 too, expect a smaller gap."
    )


if __name__ == "__main__":
    main()
