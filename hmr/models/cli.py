"""``hmr model ...`` commands: list the registry, inspect and convert checkpoints."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="HMR 2.0 models: list, inspect and convert checkpoints")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    model_sub.add_parser("list", help="registered architectures and whether their weights are found").set_defaults(
        run=run_list
    )
    info = model_sub.add_parser("info", help="architecture and parameter counts of a checkpoint")
    info.add_argument("checkpoint", help="4D-Humans / Project_HMR .ckpt, our .safetensors, or a registry name")
    info.set_defaults(run=run_info)
    convert = model_sub.add_parser(
        "convert", help="write a checkpoint as .safetensors + .yaml (network only: no SMPL data, no optimizer state)"
    )
    convert.add_argument("checkpoint", help="4D-Humans / Project_HMR .ckpt or a registry name")
    convert.add_argument("output", help="output .safetensors path (the .yaml config is written beside it)")
    convert.set_defaults(run=run_convert)


def run_list(args: argparse.Namespace) -> int:
    from hmr.models.checkpoint import weight_candidates
    from hmr.models.config import REGISTRY

    for name, entry in REGISTRY.items():
        found = next((p for p in weight_candidates(name) if p.is_file()), None)
        status = f"weights: {found}" if found else ("weights: not found" if entry.weights_source else "no weights")
        print(f"{name:12s} {entry.description}  [{status}]")
    return 0


def _read(source: str):
    from hmr.models.checkpoint import check_network_state, read_checkpoint, resolve_weights

    path = resolve_weights(source)
    state, cfg = read_checkpoint(path)
    check_network_state(state, cfg, str(path))
    return path, state, cfg


def run_info(args: argparse.Namespace) -> int:
    path, state, cfg = _read(args.checkpoint)
    params = {
        part: sum(v.numel() for k, v in state.items() if k.startswith(part + ".")) for part in ("backbone", "smpl_head")
    }
    b, h = cfg.backbone, cfg.head
    print(f"checkpoint: {path}")
    print(f"architecture: {cfg.name} (ViT {b.embed_dim}/{b.depth}/{b.num_heads}, decoder {h.dim} x {h.depth} layers, "
          f"{h.heads}x{h.dim_head} heads, mlp {h.mlp_dim}, context {h.context_dim}, IEF {h.ief_iters})")  # fmt: skip
    print(f"parameters: backbone {params['backbone']:,}  head {params['smpl_head']:,}")
    ignored = sorted({k.split(".")[0] for k in state if not k.startswith(("backbone.", "smpl_head."))})
    if ignored:
        print(f"ignored: {', '.join(ignored)}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from hmr.models.checkpoint import save_checkpoint

    path, state, cfg = _read(args.checkpoint)
    out = save_checkpoint(state, cfg, args.output)
    print(f"wrote {out} and {out.with_suffix('.yaml')} ({cfg.name}, from {path})")
    return 0
