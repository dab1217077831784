"""Why the 2D-only fitting goal (every synthetic person under 40 mm PA-MPJPE) cannot be met: witnesses.

For each person the default fit misses by more than 40 mm, the fit is polished on the keypoints alone with the
synthetic generator's own sampling ranges as hard joint bounds (joints it never moves held at rest) and
|betas| <= 2 (its clip), then projected exactly into those ranges. Where the result still reproduces the
keypoints to a fraction of a pixel, it is a pose the generator could have drawn, with the same input as the
truth, yet tens of millimetres from it: no fitter can be within 40 mm of both. Writes docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import table, write_section  # noqa: E402
from hmr.body import SMPL_JOINT_NAMES, BodyModel  # noqa: E402
from hmr.data.people import load_synthetic_set, render_keypoints, sample_ranges  # noqa: E402
from hmr.evaluation.metrics import pa_mpjpe
from hmr.fitting import FitConfig, StageConfig, fit  # noqa: E402
from hmr.fitting.fitter import Fitter  # noqa: E402
from hmr.fitting.problem import Params, cam_from_transl  # noqa: E402
from hmr.geometry import (  # noqa: E402
    Camera,
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_matrix,
)

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "fitting_synthetic.npz"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-write", action="store_true", help="print the section instead of writing docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = BodyModel.default()
    gt = render_keypoints(load_synthetic_set(DATA), model)
    out = fit(gt["keypoints_2d"], gt["confidences"], model, gt["camera"])
    with torch.no_grad():
        err = 1000 * pa_mpjpe(model(out.global_orient, out.body_pose, out.betas).joints, gt["joints"]).numpy()
    bad = torch.as_tensor(np.nonzero(err > 40)[0])

    # Keypoints only (no regulariser), the generator's ranges as limits, its betas clip.
    cfg = FitConfig(pose_weight=0.0, shape_weight=0.0, bending_weight=0.0, limit_weight=1e4, max_abs_beta=2.0,
                    lm_max_step=0.02)  # fmt: skip
    fitter = Fitter(model, "openpose25", cfg, torch.device("cpu"))
    problem = fitter.problem
    ranges = [sample_ranges(j) for j in SMPL_JOINT_NAMES[1:]]
    ranges = torch.tensor(np.array([r if r is not None else np.zeros((3, 2)) for r in ranges]), dtype=torch.float32)
    problem.prior.lower.copy_(ranges[..., 0])
    problem.prior.upper.copy_(ranges[..., 1])
    cam = gt["camera"]
    camera = Camera(cam.focal_length[bad], cam.principal_point[bad], cam.image_size[bad])
    t = problem.targets(gt["keypoints_2d"][bad], gt["confidences"][bad], None, camera, 1, len(bad))
    p = Params(matrix_to_rot6d(out.global_orient[bad, 0].float()), matrix_to_axis_angle(out.body_pose[bad].float()),
                out.betas[bad].float().clamp(-2, 2), cam_from_transl(out.cam_t_full[bad].float()))  # fmt: skip
    fitter.run_stage(p, t, StageConfig(0, 0.0, lm_iterations=200))
    p.body_pose.copy_(torch.maximum(torch.minimum(p.body_pose, ranges[..., 1]), ranges[..., 0]))
    with torch.no_grad():
        kp, _ = problem.forward(p, t)
        px = (t.camera.project(kp) - t.kp2d).norm(dim=-1)
        joints = model(rot6d_to_matrix(p.orient)[:, None], axis_angle_to_matrix(p.body_pose), p.betas).joints
    witness = 1000 * pa_mpjpe(joints, gt["joints"][bad]).numpy()
    rows = []
    for k, i in enumerate(bad.tolist()):
        rows.append([str(i), f"{err[i]:.0f}", f"{witness[k]:.0f}", f"{px[k].mean():.2f}", f"{px[k].max():.2f}",
                     f"{p.betas[k].abs().max():.2f}"])  # fmt: skip
        print(rows[-1], flush=True)
    strict = [r for r in rows if float(r[4]) < 1.0 and float(r[2]) > 40]
    far = [r for r in strict if float(r[2]) > 80]
    md = (
        "## Keypoint fitting: 2D-only ambiguity witnesses (`benchmarks/bench_fitting_ambiguity.py`)\n\n"
        f"The {len(bad)} people of `tests/data/fitting_synthetic.npz` whose default 2D-only fit (exact keypoints) is "
        "over 40 mm. Each fit is polished on the keypoints alone with the generator's own sampling ranges as hard "
        "joint bounds (joints it never moves held at rest) and |betas| <= 2 (its clip), then projected exactly "
        "into those ranges: a witness is a pose the generator could have drawn. "
        f"**{len(strict)} witnesses reproduce the truth's keypoints to under 1 px (most to about 0.1 px) and lie "
        "over 40 mm from it**: each is a second person the generator can produce with the same OpenPose-25 "
        "keypoints to a fraction of a pixel. Where the two are over 80 mm apart "
        f"({', '.join(f'person {r[0]}: {r[2]} mm' for r in far) or 'none here'}), no single fit of that input "
        "can be within 40 mm of both (up to PA-MPJPE aligning each pair separately), so no fitter can guarantee "
        "the per-person 40 mm goal from 2D keypoints alone for people drawn this way; the others show how large "
        "the room left to the priors is.\n\n"
        + table(["person", "fit, mm", "witness to truth, mm", "witness px mean", "px max", "max abs beta"], rows)
    )
    print(md) if args.no_write else write_section("fitting-ambiguity", md)


if __name__ == "__main__":
    main()
