"""Keypoint fitting on the committed synthetic set: accuracy (PA-MPJPE) and CPU time. Writes docs/benchmarks.md.

Uses the bundled default body model and ``tests/data/fitting_synthetic.npz`` (60 people, generator in
``hmr.data.people``); every fit starts from the mean pose, never from the truth.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import machine, table, write_section  # noqa: E402
from hmr.body import BodyModel  # noqa: E402
from hmr.data.people import (  # noqa: E402
    limb_rotation_deg,
    load_synthetic_set,
    make_clip,
    make_synthetic_set,
    render_keypoints,
)
from hmr.evaluation.metrics import pa_mpjpe
from hmr.fitting import FitConfig, PosePrior, SequenceFitter, fit  # noqa: E402
from hmr.geometry import Camera, matrix_to_axis_angle  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "fitting_synthetic.npz"
NOISE_PX = 5.0


def _accuracy(model: BodyModel, data: dict, cases, label_suffix: str = "") -> tuple[list[list], int, dict]:
    rows, backwards, errors = [], 0, {}
    prior = PosePrior(model.joint_names)
    for noise, use_3d, solver in cases:
        gt = render_keypoints(data, model, noise_px=noise)
        start = time.perf_counter()
        out = fit(gt["keypoints_2d"], gt["confidences"], model, gt["camera"],
                  keypoints_3d=gt["keypoints_3d"] if use_3d else None, config=FitConfig(solver=solver))  # fmt: skip
        seconds = time.perf_counter() - start
        with torch.no_grad():
            joints = model(out.global_orient, out.body_pose, out.betas).joints
        err = 1000 * pa_mpjpe(joints, gt["joints"]).numpy()
        errors[(noise, use_3d, solver)] = (err, out, gt)
        bends = prior.backward_bends(matrix_to_axis_angle(out.body_pose))
        backwards += int((bends < 0).sum())
        label = ("2D + 3D" if use_3d else "2D only") + (f", {noise:g} px noise" if noise else ", exact")
        label += (", solver adam" if solver == "adam" else "") + label_suffix
        goal = (20 if use_3d else 40) * (1.5 if noise else 1.0)
        rows.append([label, f"{err.mean():.1f}", f"{np.median(err):.1f}", f"{np.percentile(err, 90):.1f}",
                     f"{err.max():.1f}", f"{goal:g}", f"{(err < goal).mean() * 100:.0f}%",
                     f"{seconds / len(err):.3f}"])  # fmt: skip
        print(rows[-1], flush=True)
    return rows, backwards, errors


def _ambiguous(result) -> tuple[int, int]:
    """Of the 2D-only exact fits over 40 mm: how many reproduce their keypoints to under 0.5 px on average
    with an ordinary shape (|betas| <= 2, the generator's clip), i.e. explain the input as well as the truth."""
    err, out, gt = result
    px = (out.keypoints_2d_full - gt["keypoints_2d"]).norm(dim=-1).mean(-1).numpy()
    ordinary = out.betas.abs().amax(-1).numpy() <= 2.0
    bad = err > 40
    return int(bad.sum()), int((bad & (px < 0.5) & ordinary).sum())


def _camera(gt: dict, idx: slice) -> Camera:
    cam = gt["camera"]
    return Camera(cam.focal_length[idx], cam.principal_point[idx], cam.image_size[idx])


def _timing(model: BodyModel, data: dict) -> list[list]:
    gt = render_keypoints(data, model)
    rows = []
    cases = [("lm", 1, False), ("lm", 16, False), ("lm", 60, False), ("adam", 1, False), ("adam", 60, False),
             ("lm", 1, True), ("lm", 60, True)]  # fmt: skip
    for solver, batch, use_3d in cases:
        cfg = FitConfig(solver=solver)
        kp3d = gt["keypoints_3d"] if use_3d else None

        def run(idx, cfg=cfg, kp3d=kp3d):
            fit(gt["keypoints_2d"][idx], gt["confidences"][idx], model, _camera(gt, idx),
                keypoints_3d=None if kp3d is None else kp3d[idx], config=cfg)  # fmt: skip

        run(slice(0, 1))  # warm-up
        # Batch 1: mean over 5 people fitted one at a time. CPU time: less sensitive to the machine's load.
        parts = [slice(i, i + 1) for i in range(5)] if batch == 1 else [slice(0, batch)]
        start = time.process_time()
        for idx in parts:
            run(idx)
        ms = (time.process_time() - start) / (5 if batch == 1 else batch) * 1000
        who = "one person at a time" if batch == 1 else f"batch {batch}"
        what = ", with 3D keypoints (LM on 2D, then Adam)" if use_3d else f", solver {solver}"
        rows.append([f"cold fit, {who}{what}", f"{ms:.0f}"])
        print(rows[-1], flush=True)
    # Warm start: a 30-frame clip of one person moving from one synthetic pose to another.
    clip = [render_keypoints(frame, model) for frame in make_clip(data, 1, 2, 30)]
    seq = SequenceFitter(model, clip[0]["camera"])
    errors, start = [], 0.0
    for i, frame in enumerate(clip):
        if i == 1:
            start = time.perf_counter()
        out = seq.step(frame["keypoints_2d"], frame["confidences"])
        with torch.no_grad():
            errors.append(1000 * pa_mpjpe(model(out.global_orient, out.body_pose, out.betas).joints, frame["joints"]))
    per_frame = (time.perf_counter() - start) / (len(clip) - 1)
    rows.append([
        "warm-started frame (SequenceFitter.step), 1 person",
        f"{per_frame * 1000:.0f} ({1 / per_frame:.0f} fps; PA-MPJPE {errors[0].item():.0f} mm cold first frame, "
        f"{torch.cat(errors[1:]).mean():.0f} mm mean of the warm frames, 2D only)",
    ])  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-write", action="store_true", help="print the section instead of writing docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = BodyModel.default()
    data = {k: v for k, v in load_synthetic_set(DATA).items()}
    cases = [(0.0, False, "lm"), (0.0, True, "lm"), (NOISE_PX, False, "lm"), (NOISE_PX, True, "lm"),
             (0.0, False, "adam"), (NOISE_PX, False, "adam")]  # fmt: skip
    acc, backwards, errors = _accuracy(model, data, cases)
    other = make_synthetic_set(model, 120, seed=1)
    acc2, _, errors2 = _accuracy(model, other, cases[:1] + cases[2:3], ", second set (seed 1, 120 people)")
    ratio = [errors[(NOISE_PX, False, "lm")][0].mean() / errors[(0.0, False, "lm")][0].mean(),
             errors[(NOISE_PX, True, "lm")][0].mean() / errors[(0.0, True, "lm")][0].mean(),
             errors2[(NOISE_PX, False, "lm")][0].mean() / errors2[(0.0, False, "lm")][0].mean()]  # fmt: skip
    over, explained = _ambiguous(errors[(0.0, False, "lm")])
    over2, explained2 = _ambiguous(errors2[(0.0, False, "lm")])
    timing = _timing(model, data)
    n = len(data["betas"])
    md = (
        "## Keypoint fitting (`benchmarks/bench_fitting.py`)\n\n"
        f"Body model `{model.name}`; {n} synthetic people from `tests/data/fitting_synthetic.npz` (mean limb "
        f"rotation {limb_rotation_deg(data['body_pose'].astype(np.float64)).mean():.0f} deg from rest, random "
        "shapes and cameras), OpenPose-25 keypoints projected exactly or with Gaussian noise; every fit starts "
        "from the mean pose. PA-MPJPE over the 24 body joints, mm, per person; `pass` is the share under `goal` "
        "(40 mm 2D only, 20 mm with 3D keypoints, which are root-relative and compared after a similarity "
        "alignment; 1.5x those with noise). Time per person of the batched fit (all people at once). Default "
        "solver: Levenberg-Marquardt for single-frame 2D-only fits (with 3D keypoints: LM on the 2D keypoints "
        "alone for the camera and two pose stages, then Adam with them, `cold_2d_stages`); `solver adam` rows "
        "use Adam everywhere. The second set is drawn by the same generator with another seed "
        "(`make_synthetic_set(model, 120, seed=1)`); the newest settings were chosen on it.\n\n"
        + table(["input", "mean", "median", "90%", "max", "goal", "pass", "s/person"], acc + acc2)
        + f"\n\nElbows/knees bent backwards in the fits: {backwards} (of {4 * n * len(acc)} hinges). Mean error "
        f"with 5 px noise over the exact one: {ratio[0]:.2f}x (2D only), {ratio[1]:.2f}x (2D + 3D); second "
        f"set {ratio[2]:.2f}x.\n\n"
        f"**Why 2D only falls short:** of the {over} people over 40 mm (2D only, exact), {explained} are fitted with "
        f"keypoints within 0.5 px of the input on average and an ordinary shape (|betas| <= 2); second set: "
        f"{explained2} of {over2}. Those fits explain the keypoints as well as the truth does; they differ from "
        "it where 2D keypoints cannot decide (a limb's depth, bone lengths against foreshortening), so the "
        "priors choose, and a prior that chose the generator's pose every time would have to know the "
        "answer.\n\n"
        f"CPU time (process time), 1 thread: {machine()}. LM cold fits run at most 50 iterations (10 camera, then 10 "
        "pose, 10 pose and 20 final on each of 3 orientation hypotheses, the cheapest kept at the end), each "
        "with the Jacobian of the residuals computed analytically (`ReducedBodyModel.linearise`) and one 85x85 "
        "solve per person. Warm frames: a limb flip search, then 10 LM iterations.\n\n"
        + table(["case", "ms per person"], timing)
    )
    print(md) if args.no_write else write_section("fitting", md)


if __name__ == "__main__":
    main()
