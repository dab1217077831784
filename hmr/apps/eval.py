"""``hmr eval --model NAME_OR_CKPT_OR_fit --dataset NAME_OR_PATH``: score a network or the fitting pipeline on
an evaluation set by its paper's protocol; print a table, write JSON / CSV / plots, append the history."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hmr.evaluation.evaluate import PROTOCOLS
    from hmr.evaluation.sets import EVAL_SETS

    p.add_argument("--model", required=True, help="a registered network name, a checkpoint file, or 'fit' "
                   "(the out-of-the-box BlazePose + keypoint-fitting pipeline)")  # fmt: skip
    p.add_argument("--dataset", required=True, help=f"a set ({', '.join(EVAL_SETS)}) under --data-root, or a "
                   "path: a HMR 2.0 evaluation .npz, a SMPLer .yaml, a synthetic set's eval .npz")  # fmt: skip
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), help="default: the dataset's own")
    p.add_argument("--data-root", help="folder the set names resolve under (default: $HMR_DATA_ROOT)")
    p.add_argument("--image-root", default="", help=".npz sets: the folder their imgname entries are relative to")
    p.add_argument("--out", type=Path, default=Path("eval_out"), help="report folder (default eval_out/)")
    p.add_argument("--smpl", help="SMPL model file (default: $HMR_SMPL_PATH, else the bundled body model)")
    p.add_argument("--smpl-j19", help="SMPL_to_J19.pkl: the 19 extra keypoints HMR 2.0's protocol scores")
    p.add_argument("--h36m-regressor", help="J_regressor_h36m.npy: SMPLer's protocol's H36M joints")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers reading and cropping")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--limit", type=int, default=0, help="score at most this many samples (0: all)")
    p.add_argument("--no-resume", action="store_true", help="start over instead of continuing an interrupted run")
    p.add_argument("--mlflow", action="store_true", help="also log the run to the embedded MLflow store")
    p.add_argument("--mlflow-uri", help="log to this MLflow tracking URI (a server or a sqlite:/// file)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from hmr.body import load_body_model
    from hmr.evaluation import evaluate
    from hmr.evaluation.evaluate import file_hash
    from hmr.evaluation.report import log_mlflow, stem, write_report

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    body = load_body_model(args.smpl, joint_regressor_extra=args.smpl_j19, h36m_regressor=args.h36m_regressor)
    ckpt_hash = ""
    if args.model == "fit":
        from hmr.evaluation.predictors import FittingPredictor
        from hmr.pipeline import PipelineConfig

        cfg = PipelineConfig()
        cfg.device = device
        model = FittingPredictor(cfg, body_model=body)
    else:
        from hmr.models import load_model

        if Path(args.model).is_file():
            ckpt_hash = file_hash(args.model)
        model = load_model(args.model, body_model=body, device=device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The state file is named after the run, so each model/dataset pair resumes its own.
    probe = f"{Path(str(args.dataset)).stem}__{args.model if args.model == 'fit' else Path(args.model).stem}"
    state = out / f".{probe}.partial.npz"
    if args.no_resume and state.exists():
        state.unlink()
    result = evaluate(model, args.dataset, args.protocol, body_model=body, data_root=args.data_root,
                      image_root=args.image_root, batch_size=args.batch_size, num_workers=args.workers,
                      limit=args.limit, checkpoint_hash=ckpt_hash, state_path=state)  # fmt: skip
    print(result.table())
    paths = write_report(result, out)
    state.unlink(missing_ok=True)
    print(f"report: {paths['json']} ({stem(result)}.csv, plots, {paths['history'].name})")
    if args.mlflow or args.mlflow_uri:
        print(f"mlflow run: {log_mlflow(result, paths, args.mlflow_uri)}")
    return 0
