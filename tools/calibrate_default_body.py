"""Calibrate the bundled default body model's BlazePose landmark definitions to BlazePose and rewrite its file.

    python tools/calibrate_default_body.py [--file hmr/assets/body/hmr_anny_v1.npz] [--images 1000] [--seed 0]

Runs :func:`hmr.data.calibration.calibrate_landmarks` on the model in ``--file`` (default: the shipped
``hmr_anny_v1.npz``), always starting from the geometric ``blazepose33`` definition that
``tools/build_default_body.py`` writes, and writes the file back (or to ``--out``) with:

- ``kp_blazepose33_*``: the calibrated set (what the toolkit loads);
- ``kp_blazepose33_geometric_*``: the geometric set it started from (not listed in ``keypoint_sets``, so the
  loader ignores it): the file as built, kept so that a re-run starts from the same definition and a fresh build
  can be compared with the shipped file (tests/test_default_body.py);
- ``build_info["blazepose33_calibration"]``: the run (method version, seed, render and detection counts, held-out
  errors before and after, overall and per landmark).

Every other array is bit-identical. docs/body_model_format.md, "Calibrated landmark definitions". Needs mediapipe
and the renderer (the runtime's own dependencies), not the 'build' extra; about 2 minutes for 1000 renders on 2
CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from hmr.body import BodyModel, KeypointSet
from hmr.body.assets import DEFAULT_MODEL_NAME, default_model_path
from hmr.body.model import keypoint_set_arrays, write_npz_atomic
from hmr.data.calibration import GEOMETRIC_SET as GEOMETRIC
from hmr.data.calibration import SET_NAME, calibrate_landmarks, with_keypoint_set
from hmr.io.arrays import load_npz

IMAGES = 1000
SEED = 0


def geometric_definition(arrays: dict[str, np.ndarray]) -> KeypointSet:
    """The geometric ``blazepose33`` set of a default body model file: the stored copy when the file was calibrated
    before, else the file's own set (it must then be uncalibrated, as ``tools/build_default_body.py`` writes it)."""
    key = GEOMETRIC if f"kp_{GEOMETRIC}_names" in arrays else SET_NAME
    info = json.loads(str(arrays["build_info"])) if "build_info" in arrays else {}
    if key == SET_NAME and f"{SET_NAME}_calibration" in info:
        raise ValueError(f"the file's {SET_NAME} set is calibrated and its geometric definition is missing; rebuild "
                         "the file with tools/build_default_body.py first")  # fmt: skip
    return KeypointSet(
        tuple(str(s) for s in arrays[f"kp_{key}_names"]),
        np.asarray(arrays[f"kp_{key}_rows"], np.int64),
        np.asarray(arrays[f"kp_{key}_cols"], np.int64),
        np.asarray(arrays[f"kp_{key}_weights"], np.float64),
    )


def calibrate_file(path: str | Path, out: str | Path | None = None, images: int = IMAGES, seed: int = SEED,
                   progress: bool = True):  # fmt: skip
    """Calibrate the default body model file ``path`` and write it to ``out`` (default: ``path``); the report."""
    path = Path(path)
    out = path if out is None else Path(out)
    arrays = dict(load_npz(path))
    start = geometric_definition(arrays)
    model = BodyModel.from_arrays(arrays, name=DEFAULT_MODEL_NAME, dtype=torch.float64)
    kp, report = calibrate_landmarks(model, num_images=images, seed=seed, progress=progress, start=start)
    report.start = (f"the geometric {SET_NAME} definition of tools/build_default_body.py (kept in the file as "
                    f"kp_{GEOMETRIC}_*)")  # fmt: skip
    record = {"tool": "tools/calibrate_default_body.py", **report.to_dict()}
    geometric = keypoint_set_arrays(GEOMETRIC, start)
    if f"kp_{GEOMETRIC}_names" in arrays:
        geometric = {k: arrays[k] for k in geometric}  # exactly as stored
    new = {**with_keypoint_set(arrays, kp, record), **geometric}
    same = {k for k in arrays if k in new and new[k].dtype == arrays[k].dtype and np.array_equal(new[k], arrays[k])}
    changed = set(new) - same
    allowed = {f"kp_{name}_{part}" for name in (SET_NAME, GEOMETRIC) for part in ("names", "rows", "cols", "weights")}
    if not changed <= allowed | {"build_info"}:
        raise AssertionError(f"calibration would change more than the {SET_NAME} set: {sorted(changed - allowed)}")
    write_npz_atomic(out, new)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Calibrate the default body model's blazepose33 set to BlazePose and "
                                 "rewrite the model file (only that set and build_info change).")  # fmt: skip
    ap.add_argument("--file", type=Path, default=None, help="body model .npz (default: the shipped hmr_anny_v1.npz)")
    ap.add_argument("--out", type=Path, default=None, help="where to write (default: --file itself)")
    ap.add_argument("--images", type=int, default=IMAGES, help=f"renders (default {IMAGES}; one in 5 held out)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    path = args.file or default_model_path()
    out = args.out or path
    report = calibrate_file(path, out, args.images, args.seed, progress=not args.quiet)
    for line in report.lines():
        print(line)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
