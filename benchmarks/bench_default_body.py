"""The bundled default body model (hmr-anny-v1): build time, fidelity to Anny, shape variance explained, speed.

Writes its section of docs/benchmarks.md and, with ``--pictures``, docs/images/default_body_*.png.
Needs the ``build`` extra (anny) for everything but the pictures (``--pictures-only``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import machine, table, timed_ms, write_section  # noqa: E402
from hmr.body import SMPL_JOINT_NAMES, BodyModel  # noqa: E402
from hmr.body.default import default_model_path  # noqa: E402
from hmr.geometry import Camera  # noqa: E402

THREADS = 2
IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}

# Named example poses as {joint: axis-angle} in SMPL axes (arms along +-x, legs along -y, facing +z).
POSES = {
    "relaxed": {"left_shoulder": (0, 0, -1.25), "right_shoulder": (0, 0, 1.25), "left_elbow": (0, -0.3, 0),
                "right_elbow": (0, 0.3, 0)},
    "walking": {"left_hip": (-0.5, 0, 0), "right_hip": (0.35, 0, 0), "left_knee": (0.2, 0, 0),
                "right_knee": (0.7, 0, 0), "left_shoulder": (0.4, 0, -1.25), "right_shoulder": (-0.4, 0, 1.25),
                "left_elbow": (0, -0.4, 0), "right_elbow": (0, 0.4, 0)},
    "squatting": {"left_hip": (-1.6, 0, -0.2), "right_hip": (-1.6, 0, 0.2), "left_knee": (1.9, 0, 0),
                  "right_knee": (1.9, 0, 0), "left_ankle": (-0.3, 0, 0), "right_ankle": (-0.3, 0, 0),
                  "spine1": (0.3, 0, 0), "left_shoulder": (0, -1.3, 0), "right_shoulder": (0, 1.3, 0)},
    "waving": {"left_shoulder": (0, 0, -1.3), "right_shoulder": (0, 0, -0.3), "right_elbow": (0, 0, -1.6),
               "neck": (0, -0.3, 0), "spine2": (0, 0, 0.1)},
    "cheering": {"left_shoulder": (0, 0, 0.9), "right_shoulder": (0, 0, -0.9), "left_elbow": (0, 0, 0.6),
                 "right_elbow": (0, 0, -0.6), "head": (-0.3, 0, 0)},
}  # fmt: skip


def body_pose(spec: dict[str, tuple[float, float, float]]) -> torch.Tensor:
    pose = torch.zeros(1, len(SMPL_JOINT_NAMES) - 1, 3)
    for name, aa in spec.items():
        pose[0, J[name] - 1] = torch.tensor(aa)
    return pose


def measure(rounds: int) -> str:
    from tools.build_default_body import AnnyRig, build_default_body, fidelity, heldout_explained_variance

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        info = build_default_body(Path(tmp) / "fresh.npz", progress=False)
        build_s = time.perf_counter() - start
        with np.load(Path(tmp) / "fresh.npz") as fresh, np.load(default_model_path()) as shipped:
            diff = max(
                float(np.abs(fresh[k].astype(np.float64) - shipped[k]).max())
                for k in shipped.files
                if shipped[k].dtype.kind == "f"
            )
    model = BodyModel.default(dtype=torch.float64)
    rig = AnnyRig()
    fid = fidelity(model, rig)
    heldout = heldout_explained_variance(model, rig)
    insample = sum(info["explained_variance_ratio"])
    m32 = BodyModel.default()
    speed = []
    for bsz in (1, 64):
        inp = {"body_pose": torch.randn(bsz, 23, 3) * 0.3, "betas": torch.randn(bsz, 10)}
        with torch.no_grad():
            speed.append(f"{timed_ms(lambda i=inp: m32(**i), rounds)[0]:.1f}")
    size_mb = default_model_path().stat().st_size / 1e6
    rows = [
        ["mean vertex distance to Anny's skinning, 20 random poses and adult phenotypes",
         f"**{1000 * fid['posed_mean']:.1f} mm** (95th pct {1000 * fid['posed_p95']:.1f}, max {1000 * fid['posed_max']:.1f})"],
        ["of which shape (10 components, zero pose)", f"{1000 * fid['shape_mean']:.2f} mm"],
        ["phenotype-induced vertex variance explained by 10 components",
         f"**{100 * insample:.3f}%** (build samples), {100 * heldout:.3f}% (200 fresh samples)"],
        ["variance explained by component 0 alone (stature)", f"{100 * info['explained_variance_ratio'][0]:.2f}%"],
        ["build time (`hmr body build`, Anny cache present)", f"{build_s:.0f} s"],
        ["fresh build vs shipped file, max abs difference", f"{diff:.1e}"],
        ["shipped file size", f"{size_mb:.1f} MB"],
        ["forward, float32, batch 1 / 64", f"{speed[0]} / {speed[1]} ms"],
    ]  # fmt: skip
    return (
        "## Default body model (`benchmarks/bench_default_body.py`)\n\n"
        f"`hmr-anny-v1` (docs/body_model_format.md) against Anny {info['source'].split()[1]} itself, CPU: "
        f"{machine()}, 1-minute load average {os.getloadavg()[0]:.1f} at the end (timings on a shared machine "
        "vary with it). Poses: axis-angle per body joint ~ N(0, 0.3²) per component, expressed on Anny's rig by "
        "turning every Anny bone with its SMPL joint's world rotation; shapes: the 10 components fitted to "
        "each phenotype's T-posed Anny mesh by least squares. Target: < 20 mm and >= 95%.\n\n"
        + table(["quantity", "value"], rows)
    )


def pictures() -> list[Path]:
    from PIL import Image

    from hmr.render import Renderer

    model = BodyModel.default()
    faces = model.faces.numpy()
    to_cam = np.diag([1.0, -1.0, -1.0])  # body frame (y up, facing +z) -> camera frame facing the camera
    colour = (0.62, 0.72, 0.86)

    def shot(renderer, verts: np.ndarray, yaw: float = 0.0) -> np.ndarray:
        return renderer.view(verts @ to_cam.T + [0.0, 0.0, 4.0], faces, yaw=yaw, colors=colour)

    def fixed_shot(renderer, verts: np.ndarray, row: np.ndarray) -> np.ndarray:
        """A front view with one camera for a whole ``row`` of bodies (feet on one line), so sizes compare."""
        height = np.ptp(row[..., 1], axis=1).max()
        focal = 0.9 * 4.0 * min(renderer.height / height, renderer.width / np.ptp(row[..., 0], axis=1).max())
        v = verts @ to_cam.T + [0.0, row[..., 1].min() + height / 2, 4.0]
        camera = Camera.full_image(renderer.width, renderer.height, focal)
        return renderer.render(v, faces, camera, colors=colour, background=(255, 255, 255), maps=False).image

    def save(name: str, tiles: list[np.ndarray]) -> Path:
        path = IMAGES / f"default_body_{name}.png"
        Image.fromarray(np.concatenate(tiles, axis=1)).save(path)
        return path

    IMAGES.mkdir(parents=True, exist_ok=True)
    out = []
    with torch.no_grad(), Renderer(360, 480) as r:
        mean = model().vertices[0].numpy()
        out.append(save("mean", [shot(r, mean), shot(r, mean, yaw=90.0)]))
    with torch.no_grad(), Renderer(360, 400) as r:
        for comp in range(4):
            betas = torch.zeros(3, 10)
            betas[:, comp] = torch.tensor([-2.0, 0.0, 2.0])
            verts = model(betas=betas).vertices.numpy()
            out.append(save(f"shape{comp}", [fixed_shot(r, v, verts) for v in verts]))
        tiles = []
        for spec in POSES.values():
            v = model(body_pose=body_pose(spec)).vertices[0].numpy()
            tiles.append(shot(r, v, yaw=-25.0))
        out.append(save("poses", tiles))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50, help="timed forward calls per batch size")
    parser.add_argument("--pictures", action="store_true", help="also render docs/images/default_body_*.png")
    parser.add_argument("--pictures-only", action="store_true", help="only render the pictures (no anny needed)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    if args.pictures or args.pictures_only:
        for path in pictures():
            print("wrote", path)
    if args.pictures_only:
        return
    md = measure(args.rounds)
    print(md)
    if not args.no_write:
        write_section("default-body", md)


if __name__ == "__main__":
    main()
