"""``hmr ui``: the MLflow UI on the store training and evaluation log to, on this machine only by default."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--uri", help="tracking store (default: the embedded one, mlruns/mlflow.db here)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import os
    import subprocess
    import sys

    from hmr.evaluation.report import default_tracking_uri, sqlite_file

    uri = args.uri or default_tracking_uri()
    db = sqlite_file(uri)
    if db is not None and not db.is_file():
        raise FileNotFoundError(f"{db}: no MLflow store here yet (hmr train or hmr eval --mlflow make it)")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    print(f"MLflow UI on http://{args.host}:{args.port} (store {uri}); Ctrl-C stops it")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    return subprocess.call(cmd, env=env)
