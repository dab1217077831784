"""``hmr body ...`` commands."""

from __future__ import annotations

import argparse

import torch


def add_arguments(body: argparse.ArgumentParser):
    """Add ``hmr body``'s actions; returns the sub-parsers action, to which ``hmr.cli`` adds ``calibrate``
    (``hmr.apps.calibrate``: it renders and runs BlazePose, which this room may not import)."""
    body_sub = body.add_subparsers(dest="body_command", metavar="ACTION", required=True)
    info = body_sub.add_parser("info", help="load a body model and print its structure and a posed example")
    info.add_argument(
        "path", nargs="?", help="SMPL .pkl/.npz or folder (default: $HMR_SMPL_PATH, else the bundled default model)"
    )
    info.add_argument("--gender", default="neutral")
    info.set_defaults(run=run_info)
    export = body_sub.add_parser(
        "export-onnx", help="write the body model as an ONNX graph: pose, betas -> vertices, joints (docs/models.md)"
    )
    export.add_argument("--out", required=True, help="output .onnx file")
    export.add_argument("--smpl", help="SMPL .pkl/.npz or folder (default: $HMR_SMPL_PATH, else the bundled model)")
    export.add_argument("--gender", default="neutral")
    export.set_defaults(run=run_export_onnx)
    return body_sub


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


def run_export_onnx(args: argparse.Namespace) -> int:
    from hmr.body import load_body_model
    from hmr.body.export import export_body

    model = load_body_model(args.smpl, gender=args.gender)
    path, diffs = export_body(model, args.out)
    print(f"wrote {path} ({model.name}: {model.num_vertices} vertices, {model.num_joints} joints, "
          f"{model.num_betas} betas)")  # fmt: skip
    print("onnxruntime vs torch on 2 random poses, max |difference| (m): "
          + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))  # fmt: skip
    return 0
