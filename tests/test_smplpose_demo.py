"""``hmr demo --checkpoint`` with an SMPL-Pose network (a tiny untrained one: the plumbing, not the accuracy)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hmr.cli import main as cli_main
from hmr.models import create_model, save_model
from tests.test_registry import SMALL

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "basketball1.png"


def test_demo_with_smplpose_checkpoint(tmp_path):
    torch.manual_seed(0)
    ckpt = save_model(create_model("smplpose_w32", **SMALL["smplpose"]), tmp_path / "smplpose_tiny.safetensors")
    args = ["demo", str(EXAMPLE), "--checkpoint", str(ckpt), "--out", str(tmp_path / "out"), "--no-tiles"]
    assert cli_main(args) == 0
    people = json.loads((tmp_path / "out" / "basketball1.json").read_text())["people"]
    assert people and json.loads((tmp_path / "out" / "basketball1.json").read_text())["method"] == "network"
