"""onnxruntime vs PyTorch on the CPU: crops/s of every registered network's exported graph (``regress``: crops ->
rotations, betas, camera; the body model is posed in torch either way), batch 1 and 8. Writes its section of
docs/benchmarks.md (and ``--json``).

Each model runs in a fresh subprocess: build it at full size with random weights (speed does not depend on the
values) and a synthetic SMPL-sized body model, export it (``hmr.models.onnx.export_network``, timed), open it as
the pipeline does (``intra_op_num_threads`` = torch's threads), then alternate torch and onnxruntime passes on the
same crops (one warm-up each, then timed pairs until ``--seconds`` per runtime or ``--reps`` pairs), so that
both see the same machine load. A larger batch is skipped when its four passes (warm-up and one timed, each
runtime), estimated from batch 1's time per crop, would take more than ``--budget`` seconds.
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


def _time_pair(model, session, crops, seconds: float, reps: int) -> tuple[list[float], list[float]]:
    feed = {"crops": crops.numpy()}
    with torch.inference_mode():
        model.regress(crops)
        session.run(None, feed)
        t_torch, t_onnx = [], []
        while len(t_torch) < reps and (not t_torch or min(sum(t_torch), sum(t_onnx)) < seconds):
            start = time.perf_counter()
            model.regress(crops)
            t_torch.append(time.perf_counter() - start)
            start = time.perf_counter()
            session.run(None, feed)
            t_onnx.append(time.perf_counter() - start)
    return t_torch, t_onnx


def measure(name: str, batches: list[int], seconds: float, reps: int, budget: float) -> dict:
    from hmr.io.onnx import open_session
    from hmr.models import create_model
    from hmr.models.onnx import KIND, export_network
    from tests.test_models import make_body_model

    torch.manual_seed(0)
    model = create_model(name, body_model=make_body_model()).eval()
    out = {"params": sum(p.numel() for p in model.parameters()), "rows": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        start = time.perf_counter()
        path, diffs = export_network(model, Path(tmp) / f"{name}.onnx", verify=False)
        out["export_s"] = time.perf_counter() - start
        out["file_mb"] = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        out["external"] = path.with_name(path.name + ".data").exists()
        session = open_session(path, KIND)[0]
        s = model.config.image_size
        for batch in batches:
            if batch > 1 and out["rows"] and 2 * batch * out["rows"][0]["torch_s"] * 2 > budget:
                out["skipped"] = batch
                continue
            crops = torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(batch))
            load = os.getloadavg()[0]
            t_torch, t_onnx = _time_pair(model, session, crops, seconds, reps)
            ratio = statistics.median(a / b for a, b in zip(t_torch, t_onnx, strict=True))  # pairs: same load
            med_torch, med_onnx = statistics.median(t_torch), statistics.median(t_onnx)
            out["rows"].append({"batch": batch, "torch_s": med_torch, "onnx_s": med_onnx, "ratio": ratio,
                                "passes": len(t_torch), "load": load})  # fmt: skip
    return out


def main() -> None:
    from hmr.models import list_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list_models(), help="registered names (default: all)")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per runtime and case (at least)")
    parser.add_argument("--reps", type=int, default=9, help="at most this many timed passes per runtime and case")
    parser.add_argument("--budget", type=float, default=150.0, help="skip a larger batch expected to take longer")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--from-json", help="write the docs section from a --json file of an earlier run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one model in this fresh process
        print(json.dumps(measure(args.child, args.batches, args.seconds, args.reps, args.budget)))
        return

    if args.from_json:  # re-render the section from a saved run
        saved = json.loads(Path(args.from_json).read_text())
        write_section("onnx", _markdown(saved["machine"], saved["results"], saved["settings"]))
        return
    import onnxruntime

    where = f"{machine()}, onnxruntime {onnxruntime.__version__}"
    settings = {"seconds": args.seconds, "reps": args.reps, "budget": args.budget}
    print(f"CPU: {where}; load average {os.getloadavg()[0]:.1f}; random weights (speed does not depend on them)")
    results = {}
    for name in args.models:
        cmd = [sys.executable, __file__, "--child", name, "--batches", *map(str, args.batches),
               "--seconds", str(args.seconds), "--reps", str(args.reps), "--budget", str(args.budget)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        for row in _rows({name: r}):
            print(" | ".join(map(str, row)), flush=True)
        if "skipped" in r:
            print(f"{name}: batch {r['skipped']} skipped (over --budget {args.budget:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": where, "settings": settings, "results": results}, indent=1))
    if not args.no_doc:
        write_section("onnx", _markdown(where, results, settings))


def _rows(results: dict) -> list[list]:
    rows = []
    for name, r in results.items():
        for row in r["rows"]:
            b, ts, os_, ratio = row["batch"], row["torch_s"], row["onnx_s"], row["ratio"]
            size = f"{r['file_mb']:.0f}" + (" (ext.)" if r["external"] else "")
            rows.append([name, f"{r['params'] / 1e6:.1f} M", b, f"{b / ts:.3g}", f"{b / os_:.3g}", f"{ratio:.2f}",
                         row["passes"], f"{r['export_s']:.0f}", size, f"{row['load']:.1f}"])  # fmt: skip
    return rows


def _markdown(where: str, results: dict, settings: dict) -> str:
    skipped = [f"{n} batch {r['skipped']}" for n, r in results.items() if "skipped" in r]
    header = ["model", "params", "batch", "torch crops / s", "onnxruntime crops / s", "onnxruntime / torch",
              "timed passes", "export (s)", "file (MB)", "load avg"]  # fmt: skip
    ratios: dict[tuple[str, int], list[float]] = {}
    for name, r in results.items():
        for row in r["rows"]:
            ratios.setdefault((name.split("_")[0], row["batch"]), []).append(row["ratio"])
    summary = "; ".join(f"{fam} batch {b}: {min(v):.2f}-{max(v):.2f}" for (fam, b), v in sorted(ratios.items()))
    return (
        "## ONNX runtime (`benchmarks/bench_onnx.py`)\n\n"
        f"The exported network graph (`hmr model export-onnx`: normalised crops -> rotations, betas, camera; the "
        f"body model is posed in torch with either runtime, so it is not timed) run by onnxruntime "
        f"(`CPUExecutionProvider`, as `network.runtime=onnx` opens it: intra-op threads = torch's) and by PyTorch "
        f"(`model.regress`, `torch.inference_mode`), float32, full size, CPU: {where}. **Random weights** (speed "
        f"does not depend on the values) and a synthetic SMPL-sized body model. Each model in a fresh process; "
        f"torch and onnxruntime passes alternate on the same crops after one warm-up each (crops/s: median of the "
        f"timed passes, {settings['seconds']:.0f} s or {settings['reps']} passes per runtime, whichever comes "
        "first; `onnxruntime / torch`: the median over pairs of consecutive passes of torch's time over "
        "onnxruntime's, so both sides of each ratio ran under the same load). `export`: `export_network` (trace, "
        "ONNX translation and optimisation, check, write); `(ext.)`: weights in `FILE.onnx.data`. `load avg`: "
        "1-minute load average when the row started (other jobs share these cores, so single passes varied up to "
        "several-fold; the ratios are steadier than the crops/s)."
        + (f" Not measured, for time (its four passes, estimated from batch 1, would take over "
           f"{settings['budget']:.0f} s): {', '.join(skipped)}." if skipped else "")  # fmt: skip
        + "\n\n" + table(header, _rows(results))
        + f"\n\nonnxruntime / torch by family and batch (min-max over sizes): {summary}."
    )


if __name__ == "__main__":
    main()
