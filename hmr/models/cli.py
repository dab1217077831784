"""``hmr model ...`` commands: list the registry, inspect, convert and export (ONNX) checkpoints."""

from __future__ import annotations

import argparse


def add_arguments(model: argparse.ArgumentParser) -> None:
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    model_sub.add_parser("list", help="registered architectures and whether their weights are found").set_defaults(
        run=run_list
    )
    info = model_sub.add_parser("info", help="architecture and parameter counts of a checkpoint")
    info.add_argument(
        "checkpoint", help="a reference .ckpt (4D-Humans, Project_HMR), our .safetensors, or a registry name"
    )
    info.set_defaults(run=run_info)
    convert = model_sub.add_parser(
        "convert", help="write a checkpoint as .safetensors + .yaml (network only: no SMPL data, no optimizer state)"
    )
    convert.add_argument("checkpoint", help="a reference .ckpt (4D-Humans, Project_HMR) or a registry name")
    convert.add_argument("output", help="output .safetensors path (the .yaml config is written beside it)")
    convert.set_defaults(run=run_convert)
    export = model_sub.add_parser(
        "export-onnx", help="write a network as ONNX: normalised crops -> rotmats, betas, pred_cam (docs/models.md)"
    )
    export.add_argument("checkpoint", help="a reference .ckpt, our .safetensors, or a registry name")
    export.add_argument("--out", required=True, help="output .onnx file (big networks also write FILE.onnx.data)")
    export.add_argument("--smpl", help="SMPL .pkl/.npz or folder (default: $HMR_SMPL_PATH, else the bundled body "
                        "model); SMPL-Pose graphs hold its joints")  # fmt: skip
    export.add_argument("--smpl-j19", help="with --smpl: SMPL_to_J19.pkl (the networks output its keypoints)")
    export.set_defaults(run=run_export_onnx)


def run_list(args: argparse.Namespace) -> int:
    from hmr.models import MODELS
    from hmr.models.registry import weight_candidates

    for name, entry in MODELS.items():
        found = next((p for p in weight_candidates(name) if p.is_file()), None)
        status = f"weights: {found}" if found else ("weights: not found" if entry.weights_source else "no weights")
        print(f"{name:12s} {entry.description}  [{status}]")
    return 0


def _read(source: str):
    from hmr.models.registry import check_network_state, read_checkpoint, resolve_weights

    path = resolve_weights(source)
    state, cfg = read_checkpoint(path)
    check_network_state(state, cfg, str(path))
    return path, state, cfg


def run_info(args: argparse.Namespace) -> int:
    from hmr.models import FAMILIES
    from hmr.models.weights import checkpoint_state, torch_load

    if str(args.checkpoint).lower().endswith(".onnx"):
        from hmr.models.onnx import describe

        print("\n".join(describe(args.checkpoint)))
        return 0
    path, state, cfg = _read(args.checkpoint)
    params: dict[str, int] = {}
    for key, value in state.items():
        params[key.split(".")[0]] = params.get(key.split(".")[0], 0) + value.numel()

    print(f"checkpoint: {path}")
    print(f"architecture: {FAMILIES[cfg.architecture].describe(cfg)}")
    print("parameters: " + "  ".join(f"{part} {n:,}" for part, n in params.items()))
    if path.suffix != ".safetensors":  # what the reference file holds besides the network (memory-mapped, cheap)
        raw = checkpoint_state(torch_load(path))
        ignored = sorted({k.split(".")[0] for k in raw if k.split(".")[0] not in params})
        if ignored:
            print(f"ignored: {', '.join(ignored)}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from hmr.models.weights import save_safetensors

    path, state, cfg = _read(args.checkpoint)
    out = save_safetensors(state, cfg, args.output)
    print(f"wrote {out} and {out.with_suffix('.yaml')} ({cfg.name}, from {path})")
    return 0


def run_export_onnx(args: argparse.Namespace) -> int:
    from hmr.body import load_body_model
    from hmr.models.onnx import export_network
    from hmr.models.registry import load_model, resolve_weights

    if resolve_weights(args.checkpoint).suffix.lower() == ".onnx":
        raise ValueError(f"{args.checkpoint}: is already an ONNX file")
    body = load_body_model(args.smpl, joint_regressor_extra=args.smpl_j19)
    model = load_model(args.checkpoint, body_model=body)
    path, diffs = export_network(model, args.out)
    extra = f" and {path.name}.data" if path.with_name(path.name + ".data").is_file() else ""
    held = f"; the graph holds the joints of body model {body.name!r}" if model.regress_reads_body else ""
    print(f"wrote {path}{extra} ({model.config.name}{held})")
    print("onnxruntime vs torch on 2 random crops, max |difference|: "
          + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))  # fmt: skip
    return 0
