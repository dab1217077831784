"""``hmr body ...`` commands."""

from __future__ import annotations

import argparse

import torch


def add_arguments(body: argparse.ArgumentParser) -> None:
    body_sub = body.add_subparsers(dest="body_command", metavar="ACTION", required=True)
    info = body_sub.add_parser("info", help="load a body model and print its structure and a posed example")
    info.add_argument(
        "path", nargs="?", help="SMPL .pkl/.npz or folder (default: $HMR_SMPL_PATH, else the bundled default model)"
    )
    info.add_argument("--gender", default="neutral")
    info.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    from hmr.body import load_body_model

    model = load_body_model(args.path, gender=args.gender)
    out = model(body_pose=torch.zeros(1, model.num_joints - 1, 3))
    height = (out.vertices[0, :, 1].max() - out.vertices[0, :, 1].min()).item()
    print(f"body model: {model.name}")
    print(f"vertices: {model.num_vertices}  faces: {model.faces.shape[0]}  joints: {model.num_joints}  "
          f"shape components: {model.num_betas}  pose correctives: {model.posedirs is not None}")  # fmt: skip
    print(f"keypoint sets: {', '.join(f'{k} ({v.shape[1]})' for k, v in out.keypoints.items()) or 'none'}")
    print(f"mean-shape height at zero pose: {height:.3f} m")
    return 0
