"""Animated exports (skinned .glb, .bvh) of a tracked person: time per 100 frames, skinning truncation and
pose-corrective differences. Writes its section of docs/benchmarks.md.

``--image`` instead runs tests/data/vtest_clip.mp4 through the video pipeline, exports the walking woman's
track as .glb and renders five of its frames overlaid with Blender (Cycles on the CPU, from a 3/4 view) into
docs/images/export_walk.png (needs the bpy venv of scripts/setup_env.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.report import machine, table, timed_ms, write_section  # noqa: E402
from hmr.body import BodyModel  # noqa: E402
from hmr.io.bvh import write_bvh  # noqa: E402
from hmr.io.gltf import skin_influences, write_skinned_glb  # noqa: E402
from hmr.pipeline.animation import video_animations  # noqa: E402
from tests.synthetic_smpl import synthetic_smpl_arrays  # noqa: E402
from tests.synthetic_walk import walk_pose  # noqa: E402

FPS = 25.0


def walk_rows(model: BodyModel, frames: int) -> list[dict]:
    """VideoSession-like rows of one track walking for ``frames`` frames (one shape)."""
    rot, transl = walk_pose(frames, FPS)
    betas = np.random.default_rng(0).normal(scale=0.6, size=model.num_betas)
    with torch.no_grad():
        joints = model.posed_joints(torch.from_numpy(rot).float(), torch.from_numpy(betas).float().expand(frames, -1))
    joints = joints.numpy() + transl[:, None]
    return [{"frame": i, "track_id": 0, "smoothed": {"rotmats": rot[i], "betas": betas, "cam_t": transl[i],
                                                      "joints": joints[i]}} for i in range(frames)]  # fmt: skip


def _dense(joints: np.ndarray, weights: np.ndarray, num_joints: int) -> np.ndarray:
    out = np.zeros((len(joints), num_joints))
    np.add.at(out, (np.arange(len(joints))[:, None], joints), weights)
    return out


def benchmark() -> None:
    load = os.getloadavg()[0]
    rows, notes = [], []
    models = {"bundled `hmr-anny-v1`": BodyModel.default(),
              "synthetic SMPL layout (random posedirs)": BodyModel.from_arrays(
                  synthetic_smpl_arrays(num_vertices=6890), "synthetic SMPL")}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in models.items():
            track = walk_rows(model, 100)
            build = timed_ms(lambda m=model, t=track: video_animations(t, m, FPS))
            a = video_animations(track, model, FPS)[0].animation
            glb = timed_ms(lambda a=a: write_skinned_glb(Path(tmp) / "a.glb", a))
            bvh = timed_ms(lambda a=a: write_bvh(Path(tmp) / "a.bvh", a))
            sizes = [(Path(tmp) / n).stat().st_size / 1e6 for n in ("a.glb", "a.bvh")]
            rows.append([label, f"{a.vertices.shape[0]:,}", "{:.0f} ({:.0f})".format(*build),
                         "{:.0f} ({:.0f})".format(*glb), "{:.0f} ({:.0f})".format(*bvh),
                         f"{sizes[0]:.2f} / {sizes[1]:.2f}"])  # fmt: skip
            print(rows[-1], flush=True)
            # Skinning in the file vs the toolkit: truncated influences, and the missing pose correctives.
            full = a.skinned_vertices()
            with torch.no_grad():
                rot = torch.from_numpy(a.rotations).float()
                out = model(rot[:, :1], rot[:, 1:], torch.from_numpy(video_animations(track, model, FPS)[0].betas)
                            .float().expand(len(rot), -1))  # fmt: skip
            toolkit = out.vertices.numpy() + (a.root_positions - out.joints[:, 0].numpy())[:, None]
            nz = (a.weights > 1e-7).sum(1)
            line = [label, f"{nz.max()} ({(nz > 4).sum():,} vertices > 4)"]
            for k in (4, 8):
                j, w = skin_influences(a.weights, k)
                err = np.linalg.norm(a.skinned_vertices(weights=_dense(j, w, a.weights.shape[1])) - full, axis=-1)
                line.append(f"{1000 * err.mean():.3f} / {1000 * np.percentile(err, 99):.2f} / {1000 * err.max():.2f}")
            pd = np.linalg.norm(full - toolkit, axis=-1)
            line.append(f"{1000 * pd.mean():.3f} / {1000 * pd.max():.3f}" + (" (it has none)" if model.posedirs is None else ""))
            notes.append(line)
            print(line, flush=True)
    load = max(load, os.getloadavg()[0])
    md = (
        "## Animated exports (`benchmarks/bench_export.py`)\n\n"
        f"One track of 100 frames (a synthetic walk at {FPS:.0f} fps, `tests/synthetic_walk.py`), 24 joints. "
        f"ms, median (best) of 5: building the `Animation` from `VideoSession`-like rows "
        "(`hmr.pipeline.animation.video_animations`: rest shape through the body model), writing the skinned "
        "`.glb` (`hmr.io.gltf.write_skinned_glb`) and the `.bvh` (`hmr.io.bvh.write_bvh`), atomically to a "
        f"local disk. CPU: {machine()}; load average up to {load:.1f} (shared machine).\n\n"
        + table(["body model", "vertices", "build", ".glb", ".bvh", "MB (.glb / .bvh)"], rows)
        + "\n\nVertex error of the file's skinning against the rig's full linear blend skinning over the 100 "
        "frames (mm, mean / 99th percentile / max), keeping each vertex's 4 or 8 largest weights "
        "(renormalised; the default is 8, as many JOINTS/WEIGHTS sets as the model needs), and the "
        "difference the missing pose-corrective blend shapes make against the toolkit's vertices (mean / max; "
        "glTF skinning has none; joints are exact either way):\n\n"
        + table(["body model", "influences per vertex (max)", "4 influences", "8 influences",
                 "no pose correctives"], notes)  # fmt: skip
        + "\n\nThe SMPL-layout model's posedirs are random stand-ins (`tests/synthetic_smpl.py`): its last column "
        "shows that the correctives are missing from the file, not how large SMPL's are."
    )
    write_section("export", md)


def image(out: Path = ROOT / "docs/images/export_walk.png") -> None:
    """docs/images/export_walk.png: the walking woman of tests/data/vtest_clip.mp4, five frames overlaid."""
    from hmr.io.video import read_video
    from hmr.pipeline import Pipeline, PipelineConfig
    from hmr.pipeline.config import DetectorSection
    from hmr.pipeline.video import VideoSession
    from hmr.render import DEFAULT_PALETTE

    p = Pipeline(PipelineConfig(detector=DetectorSection(tiles=False)))
    frames, fps = read_video(ROOT / "tests/data/vtest_clip.mp4")
    session = VideoSession(p, fps)
    for picture in frames:
        session.step(picture)
    colors = {r["track_id"]: DEFAULT_PALETTE[r["track_id"] % len(DEFAULT_PALETTE)] for r in session.rows}
    people = video_animations(session.rows, p.body_model, fps, camera=session.last.camera, colors=colors)
    tid, person = max(people.items(), key=lambda kv: kv[1].animation.num_frames)
    a = person.animation
    with tempfile.TemporaryDirectory(dir=os.environ.get("HMR_KEEP_TMP")) as tmp:
        glb = Path(tmp) / "walk.glb"
        write_skinned_glb(glb, a)
        keys = np.linspace(a.frames[0], a.frames[-1], 5).round().astype(int).tolist()
        # 3/4 view from the side the person walks towards (Blender x = camera x), so that we see them come.
        view = (0.7 * np.sign(a.root_positions[-1, 0] - a.root_positions[0, 0]), -1.0, 0.4)
        spec = {"files": [], "render": {"glb": str(glb), "path": str(Path(tmp) / "walk.png"), "fps": fps,
                                        "frames": keys, "size": [720, 400], "view": view,
                                        "color": colors[tid]}}  # fmt: skip
        (Path(tmp) / "in.json").write_text(json.dumps(spec))
        subprocess.run([str(ROOT / ".venv-bpy/bin/python"), str(ROOT / "tests/blender_read.py"),
                        str(Path(tmp) / "in.json"), str(Path(tmp) / "out.json")], check=True,
                       capture_output=True)  # fmt: skip
        from PIL import Image

        Image.open(Path(tmp) / "walk.png").convert("RGB").save(out, optimize=True)
    print(f"{out}: track {tid}, frames {keys}, {out.stat().st_size / 1e3:.0f} KB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", action="store_true", help="only write docs/images/export_walk.png")
    args = parser.parse_args()
    image() if args.image else benchmark()
