"""Evaluation reports: JSON summary, per-sample CSV, a results history, plots, and MLflow.

Files in the output folder, named ``<dataset>__<model>`` (docs/evaluation.md): ``.json`` (headline and
per-joint numbers, counts, run details), ``.csv`` (one row per sample), ``_joints.png`` (per-joint 3D errors),
``_keypoints.png`` (per-keypoint PCK) and ``_hist.png`` (histogram of the per-sample headline metric); ``history.csv`` gains one
row per run, keyed by model, checkpoint hash, dataset and protocol, like 4D-Humans' regression CSV.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import time
from pathlib import Path

import numpy as np

from hmr.evaluation.evaluate import PROTOCOLS, EvalResult

HISTORY = "history.csv"
HISTORY_FIELDS = ("time", "model", "checkpoint_hash", "dataset", "protocol", "samples", "scored",
                  *sorted({m for ms in PROTOCOLS.values() for m in ms}), "samples_per_s")  # fmt: skip
MLFLOW_EXPERIMENT = "hmr-eval"
TRACKING_ENV = "MLFLOW_TRACKING_URI"


def stem(result: EvalResult) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{result.dataset}__{result.model}")


def summary(result: EvalResult) -> dict:
    return {
        "model": result.model, "checkpoint_hash": result.checkpoint_hash, "dataset": result.dataset,
        "protocol": result.protocol, "samples": result.samples, "scored": result.scored, "metrics": result.metrics,
        "per_joint": {k: {j: _finite(x) for j, x in v.items()} for k, v in result.per_joint.items()},
        "skipped": result.skipped, "seconds": round(result.seconds, 3),
        "samples_per_s": round(result.samples_per_second, 3),
    }  # fmt: skip


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def write_report(result: EvalResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the JSON, CSV and plots, append to the history; returns the paths written."""
    from hmr.io.exports import write_bytes, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = stem(result)
    paths = {"json": out / f"{base}.json", "csv": out / f"{base}.csv", "history": out / HISTORY}
    write_json(paths["json"], summary(result))
    write_bytes(paths["csv"], _per_sample_csv(result).encode())
    append_history(paths["history"], result)
    paths.update(plot(result, out / base))
    return paths


def _per_sample_csv(result: EvalResult) -> str:
    scalar = [k for k, v in result.per_sample.items() if v.ndim == 1]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["key", *scalar])
    for i, key in enumerate(result.keys):
        w.writerow([key, *(("" if not np.isfinite(result.per_sample[k][i]) else f"{result.per_sample[k][i]:.4f}")
                           for k in scalar)])  # fmt: skip
    return buf.getvalue()


def append_history(path: Path, result: EvalResult) -> None:
    """One row per run; the file is rewritten atomically with the new row (never half-appended)."""
    from hmr.io.exports import write_bytes

    old = path.read_text() if path.is_file() else ",".join(HISTORY_FIELDS) + "\n"
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "model": result.model,
           "checkpoint_hash": result.checkpoint_hash, "dataset": result.dataset, "protocol": result.protocol,
           "samples": result.samples, "scored": result.scored, "samples_per_s": f"{result.samples_per_second:.2f}",
           **{k: f"{v:.4f}" for k, v in result.metrics.items()}}  # fmt: skip
    buf = io.StringIO()
    csv.DictWriter(buf, HISTORY_FIELDS, lineterminator="\n").writerow(row)
    write_bytes(path, (old + buf.getvalue()).encode())


def plot(result: EvalResult, base: Path) -> dict[str, Path]:
    """``<base>_joints.png``: per-joint 3D errors; ``<base>_keypoints.png``: per-keypoint PCK;
    ``<base>_hist.png``: histogram of the first headline metric over samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hmr.io.exports import write_bytes

    paths = {}
    groups = {"joints": [k for k in result.per_joint if not k.startswith("pck")],
              "keypoints": [k for k in result.per_joint if k.startswith("pck")]}  # fmt: skip
    for kind, keys in groups.items():
        if not keys:
            continue
        names = list(result.per_joint[keys[0]])
        fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(names)), 3.6), dpi=100)
        x = np.arange(len(names))
        width = 0.8 / len(keys)
        for j, k in enumerate(keys):
            ax.bar(x + (j - (len(keys) - 1) / 2) * width, np.nan_to_num(list(result.per_joint[k].values())), width,
                   label=k)  # fmt: skip
        ax.set_xticks(x, names, rotation=75, fontsize=6)
        ax.set_ylabel("PCK" if kind == "keypoints" else "error (mm)")
        ax.set_title(f"{result.model} on {result.dataset}: per {kind[:-1]}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths[kind] = _save(fig, base.with_name(f"{base.name}_{kind}.png"), write_bytes)
    head = next(iter(result.metrics), None)
    values = result.per_sample.get(head) if head else None
    if values is not None and np.isfinite(values).any():
        fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
        ax.hist(values[np.isfinite(values)], bins=30, color="#4a7ab5")
        ax.set_xlabel(head + ("" if head.startswith("pck") else " (mm)"))
        ax.set_ylabel("samples")
        ax.set_title(f"{result.model} on {result.dataset}: mean {result.metrics[head]:.3g}", fontsize=9)
        fig.tight_layout()
        paths["histogram"] = _save(fig, base.with_name(base.name + "_hist.png"), write_bytes)
    return paths


def _save(fig, path: Path, write_bytes) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path


def default_tracking_uri() -> str:
    """The embedded MLflow store training and evaluation share: ``$MLFLOW_TRACKING_URI`` when set, else the
    sqlite file ``mlruns/mlflow.db`` in the working directory (no server)."""
    return os.environ.get(TRACKING_ENV) or f"sqlite:///{Path('mlruns', 'mlflow.db').resolve()}"


SQLITE = "sqlite:///"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for a server or another store)."""
    return Path(uri[len(SQLITE) :]) if uri.startswith(SQLITE) else None


def open_store(uri: str | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact location) of the store to log to (default :func:`default_tracking_uri`). An
    embedded sqlite store gets its folder made and keeps artifacts beside it (``artifacts/``); a server keeps
    its own (None)."""
    uri = uri or default_tracking_uri()
    db = sqlite_file(uri)
    if db is None:
        return uri, None
    db.parent.mkdir(parents=True, exist_ok=True)
    return uri, (db.parent / "artifacts").resolve().as_uri()


@contextlib.contextmanager
def tracking_env():
    """Restores ``$MLFLOW_TRACKING_URI`` after the block: ``mlflow.set_tracking_uri`` (also called by
    Lightning's logger) exports the URI there, which would make one run's store the default of every later
    run in this process (:func:`default_tracking_uri` reads it)."""
    before = os.environ.get(TRACKING_ENV)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TRACKING_ENV, None)
        else:
            os.environ[TRACKING_ENV] = before


def log_mlflow(result: EvalResult, paths: dict[str, Path], uri: str | None = None) -> str:
    """Log one evaluation as an MLflow run (parameters, metrics, the report files); returns its run id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tracking_env():
        return _log_mlflow(result, paths, uri)


def _log_mlflow(result: EvalResult, paths: dict[str, Path], uri: str | None) -> str:
    import mlflow

    uri, artifacts = open_store(uri)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(MLFLOW_EXPERIMENT) is None:
        mlflow.create_experiment(MLFLOW_EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(MLFLOW_EXPERIMENT)
    with mlflow.start_run(run_name=f"{result.model} on {result.dataset}") as run:
        mlflow.log_params({"model": result.model, "checkpoint_hash": result.checkpoint_hash or "-",
                           "dataset": result.dataset, "protocol": result.protocol, "samples": result.samples})  # fmt: skip
        mlflow.log_metrics({re.sub(r"[^A-Za-z0-9_.-]", "_", k): v for k, v in result.metrics.items()})
        for p in paths.values():
            if p.name != HISTORY:
                mlflow.log_artifact(str(p))
        return run.info.run_id
