"""``hmr body calibrate MODEL --out OUT.npz``: fit a body model's BlazePose landmark definitions (``blazepose33``)
to where BlazePose puts the landmarks on renders of that model, and write the model with the calibrated set
(docs/body_model_format.md, "Calibrated landmark definitions"; the method is in :mod:`hmr.data.calibration`).

``hmr body``'s other actions live in :mod:`hmr.body.cli`; this one renders and runs BlazePose, which the body room
may not import, so ``hmr.cli`` adds it to ``hmr body``'s actions from here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(body_actions) -> None:
    """Add ``calibrate`` to ``hmr body``'s sub-parsers (the action ``hmr.body.cli.add_arguments`` returns)."""
    p = body_actions.add_parser(
        "calibrate",
        help="fit the model's BlazePose landmark definitions to BlazePose on renders of the model",
        description="Render the body model alone in varied poses, shapes, views, clothes and backgrounds, run "
        "BlazePose on each render, fit each of the 33 BlazePose landmarks as a sparse, left/right-symmetric, "
        "convex combination of the model's posed vertices and joints that lands where BlazePose put it, and write "
        "the model with this 'blazepose33' keypoint set as a body model .npz that --smpl loads. Prints the "
        "held-out landmark errors before and after. Deterministic for a seed. About 1-2 minutes for the default "
        "--images on 2 CPU cores (docs/body_model_format.md, 'Calibrated landmark definitions').",
    )
    p.add_argument("model", metavar="MODEL", help="SMPL .pkl/.npz (or its folder) or a body model .npz")
    p.add_argument("--out", required=True, type=Path, help="output body model .npz (written when done, atomically)")
    p.add_argument("--images", type=int, default=800, help="renders (default 800; one in 5 is held out for the report)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gender", default="neutral", help="which SMPL_<GENDER>.pkl when MODEL is a folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from hmr.body import load_body_model
    from hmr.body.model import resolve_smpl_path, write_npz_atomic
    from hmr.data.calibration import SET_NAME, calibrate_landmarks, with_keypoint_set
    from hmr.io.arrays import load_npz

    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"{out}: the output must be a .npz file (body models load from .pkl or .npz)")
    if out.is_dir():
        raise IsADirectoryError(f"{out}: is a folder; --out must be a file")
    if args.images < 5:
        raise ValueError(f"--images must be at least 5 (one in 5 renders is held out), got {args.images}")
    source = resolve_smpl_path(args.model, args.gender)
    model = load_body_model(source, dtype=torch.float64)  # float64: the saved arrays keep the file's values
    kp, report = calibrate_landmarks(model, num_images=args.images, seed=args.seed, progress=not args.quiet)
    record = {"source": source.name, **report.to_dict()}
    if source.suffix == ".npz":
        # Every other array exactly as in the input file (its dtypes, extra arrays and build_info included).
        arrays = with_keypoint_set(dict(load_npz(source)), kp, record)
        write_npz_atomic(out, arrays)
    else:
        model.add_keypoint_set(SET_NAME, kp)
        info = {"source": source.name, f"{SET_NAME}_calibration": record}
        model.save_npz(out, extra={"build_info": np.str_(json.dumps(info, sort_keys=True))})
    for line in report.lines():
        print(line)
    print(f"wrote {out}: {model.name} with the calibrated {SET_NAME} set (use it with --smpl {out})")
    return 0
