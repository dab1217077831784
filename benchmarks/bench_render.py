"""Mesh overlay speed on 640x480 images (one and five people). Writes docs/benchmarks.md.

Meshes: the bundled default body model when ``hmr.body.BodyModel.default()`` exists, else a
ball-and-stick figure of SMPL's skeleton with a body mesh's face count (~27.7k). ``--images`` also
writes the pictures docs/images/render_*.png shown in docs/rendering.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import machine, table, write_section  # noqa: E402
from hmr.body import SMPL_JOINT_NAMES, BodyModel, BodyModelNotFoundError  # noqa: E402
from hmr.geometry import Camera, axis_angle_to_matrix  # noqa: E402
from hmr.render import DEFAULT_PALETTE, Renderer, draw_keypoints, skeleton_edges, skeleton_mesh  # noqa: E402

W, H = 640, 480
IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
# SMPL-like A-pose joints (metres, body frame: +y up, +x body-left, +z facing).
_J = np.array([
    [0, 0, 0], [0.07, -0.09, 0], [-0.07, -0.09, 0], [0, 0.11, -0.02], [0.1, -0.48, 0.01], [-0.1, -0.48, 0.01],
    [0, 0.25, -0.01], [0.1, -0.88, -0.03], [-0.1, -0.88, -0.03], [0, 0.31, 0.0], [0.11, -0.94, 0.09],
    [-0.11, -0.94, 0.09], [0, 0.51, -0.02], [0.08, 0.43, -0.01], [-0.08, 0.43, -0.01], [0, 0.6, 0.03],
    [0.18, 0.44, -0.02], [-0.18, 0.44, -0.02], [0.38, 0.26, -0.03], [-0.38, 0.26, -0.03], [0.55, 0.08, 0.0],
    [-0.55, 0.08, 0.0], [0.62, 0.01, 0.0], [-0.62, 0.01, 0.0],
])  # fmt: skip
_THICK = {"pelvis": 0.11, "spine1": 0.12, "spine2": 0.12, "spine3": 0.13, "neck": 0.06, "head": 0.1,
          "left_hip": 0.08, "right_hip": 0.08, "left_knee": 0.06, "right_knee": 0.06, "left_collar": 0.06,
          "right_collar": 0.06, "left_shoulder": 0.05, "right_shoulder": 0.05}  # fmt: skip


def figure() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ball-and-stick body (~27.7k faces): (V, 3) vertices and (J, 3) joints in the body frame, (F, 3) faces."""
    edges = skeleton_edges("smpl24")
    radius = [_THICK.get(SMPL_JOINT_NAMES[a], 0.04) for a, _ in edges]
    jr = [max(_THICK.get(n, 0.04) * 1.1, 0.05) for n in SMPL_JOINT_NAMES]
    jr[15] = 0.11  # head
    v, f = skeleton_mesh(_J, edges, radius, jr, sections=34)
    return v, f, _J


def default_body() -> BodyModel | None:
    """The bundled default body model, or None while it is not built."""
    try:
        return BodyModel.default()
    except (AttributeError, BodyModelNotFoundError):
        return None


def body_meshes(count: int, width: int = W, height: int = H) -> dict:
    """``count`` people in the camera frame of a full-image camera, standing in a loose row:
    vertices (list of (V, 3)), faces, joints (list of (24, 3)), keypoints (list of (K, 3)) of the
    keypoint set named by keypoint_set, and source (which mesh)."""
    flip = axis_angle_to_matrix(torch.tensor([[np.pi, 0.0, 0.0]]))[0].numpy()  # body frame -> camera frame
    model = default_body()
    if model is not None:
        g = torch.Generator().manual_seed(0)
        pose = torch.randn(count, 23, 3, generator=g) * 0.12
        pose[:, [11, 14]] = 0  # neck and head straight
        pose[:, 15, 2] -= 1.1  # left shoulder (joint 16) down into an A-pose
        pose[:, 16, 2] += 1.1  # right shoulder
        pose[:, 17:19, 1] += torch.tensor([-0.4, 0.4])  # elbows bent a little
        with torch.no_grad():
            out = model(global_orient=torch.zeros(count, 3), body_pose=pose.reshape(count, 69),
                        betas=torch.randn(count, model.num_betas, generator=g) * 0.7)  # fmt: skip
        verts, joints, faces = out.vertices.numpy(), out.joints.numpy(), model.faces.numpy()
        kp_set, keypoints = "openpose25", out.keypoint_set("openpose25").numpy()
        source = f"`{model.name}`"
    else:
        v, faces, j = figure()
        verts, joints = np.repeat(v[None], count, 0), np.repeat(j[None], count, 0)
        kp_set, keypoints = "smpl24", joints
        source = "ball-and-stick SMPL skeleton (`skeleton_mesh`)"
    f_full = Camera.full_image(width, height).focal_length[0, 0].item()
    depth = f_full * 2.3 / height  # a 1.8 m person fills ~80% of the height
    placed = {"vertices": [], "joints": [], "keypoints": []}
    for i in range(count):
        yaw = [0.0, 0.5, -0.6, 0.9, -0.3][i % 5]
        rot = axis_angle_to_matrix(torch.tensor([[0.0, yaw, 0.0]]))[0].numpy()
        z = depth + 0.8 * ((i * 3) % 5)  # people up to 3.2 m apart in depth, overlapping in the image
        t = np.array([(i - (count - 1) / 2) * 0.5 * z / depth, 0.2, z])
        for key, points in (("vertices", verts), ("joints", joints), ("keypoints", keypoints)):
            placed[key].append((points[i] @ rot.T @ flip.T + t).astype(np.float32))
    return {**placed, "faces": faces, "keypoint_set": kp_set, "source": source}


def photo_background(width: int = W, height: int = H) -> np.ndarray:
    """A smooth synthetic backdrop (sky-to-floor gradient with a tiled floor), RGB."""
    y = np.linspace(0, 1, height)[:, None, None]
    img = np.repeat((1 - y) * np.array([120, 150, 185]) + y * np.array([95, 85, 70]), width, axis=1)
    xx, yy = np.meshgrid(np.arange(width) * 480 // height, np.arange(height) * 480 // height)
    img[(yy > 300) & ((xx // 80 + yy // 40) % 2 == 0)] *= 0.85
    return img.clip(0, 255).astype(np.uint8)


def _time_ms(fn, reps: int = 30) -> tuple[float, float, float]:
    """Wall-clock median and best, and median process CPU time (all threads), in ms over ``reps`` calls.

    The machine is shared by other jobs: the best wall time is closest to what an idle machine gives."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def benchmark() -> None:
    rows = []
    load = os.getloadavg()[0]
    for (width, height), counts in (((W, H), (1, 5)), ((1920, 1080), (1,))):
        image, cam = photo_background(width, height), Camera.full_image(width, height)
        for samples in (4, 1):
            r = Renderer(width, height, samples=samples)
            for count in counts:
                scene = body_meshes(count, width, height)
                verts, faces, source = scene["vertices"], scene["faces"], scene["source"]
                overlay = _time_ms(lambda r=r, v=verts, f=faces, i=image, c=cam: r.overlay(i, v, f, c))
                render = _time_ms(lambda r=r, v=verts, f=faces, i=image, c=cam: r.render(v, f, c, background=i))
                side = _time_ms(lambda r=r, v=verts, f=faces, c=cam: r.side_view(v, f, c))
                rows.append([f"{width}x{height}", count, f"{len(faces) * count:,}",
                             f"{r.samples}x" if r.samples > 1 else "off",
                             "{:.1f} ({:.1f}) / {:.1f}".format(*overlay), f"{render[0]:.1f} / {render[2]:.1f}",
                             f"{side[0]:.1f} / {side[2]:.1f}"])  # fmt: skip
                print(rows[-1], flush=True)
            r.close()
    load = max(load, os.getloadavg()[0])
    kp = np.random.default_rng(0).uniform(100, 400, (5, 25, 3))
    bg = photo_background()
    kp_ms = _time_ms(lambda: draw_keypoints(bg, kp, "openpose25"))[0]
    new_ms = _time_ms(lambda: Renderer(W, H).close(), reps=5)[0]
    with Renderer(W, H) as r:
        gl = r.device_name
    md = (
        "## Rendering (`benchmarks/bench_render.py`)\n\n"
        f"Full-image camera (HMR 2.0's focal 5000/256 x max(W, H) px), one person fills ~80% of the image "
        f"height; meshes: {source}; {gl} through EGL + moderngl, "
        f"no GPU. CPU: {machine()}; load average during the run up to {load:.1f} (the machine is shared). "
        "ms per frame, wall-clock median (best) / median CPU time of the process (Python plus Mesa's "
        "rasteriser threads; it varies less with other jobs than wall time): `overlay` = shaded meshes composited over an RGB image (what the demo does per "
        "frame); `render` = the same plus instance mask and metric depth (synthetic data); `side view` on "
        "white. 30 frames each.\n\n"
        + table(["image", "people", "faces", "MSAA", "overlay", "render (+mask, depth)", "side view"], rows)
        + f"\n\nDrawing 5 OpenPose-25 skeletons: {kp_ms:.1f} ms. A new `Renderer` in a thread that already has "
        f"its GL context: {new_ms:.0f} ms (the thread's first one also creates the EGL context, ~0.7 s)."
    )
    write_section("render", md)


def images() -> None:
    """The pictures in docs/images (look at them after changing shading or framing)."""
    from PIL import Image

    IMAGES.mkdir(parents=True, exist_ok=True)
    cam = Camera.full_image(W, H)
    with Renderer(W, H) as r:
        crowd = body_meshes(5)
        verts, faces, joints = crowd["vertices"], crowd["faces"], np.stack(crowd["joints"])
        front = r.overlay(photo_background(), verts, faces, cam)
        side = r.side_view(verts, faces, cam, center=joints)
        top = r.top_view(verts, faces, cam, center=joints)
        Image.fromarray(np.concatenate([front, side, top], 1)).save(IMAGES / "render_views.png")
        one = body_meshes(1)
        v1, f1 = one["vertices"], one["faces"]
        out = r.render(v1, f1, cam, colors=[_height_colors(v1[0])], background=(235, 235, 235))
        depth = out.depth.copy()
        fg = out.mask > 0
        depth[fg] = 255 * (1 - (depth[fg] - depth[fg].min()) / max(np.ptp(depth[fg]), 1e-9) * 0.8)
        mask = np.array([(40, 40, 40), *[(np.array(c) * 255).astype(int) for c in DEFAULT_PALETTE]], np.uint8)
        maps = [out.image, mask[out.mask % len(mask)], np.repeat(depth[..., None], 3, -1).astype(np.uint8)]
        Image.fromarray(np.concatenate(maps, 1)).save(IMAGES / "render_synthetic.png")
        kp = cam.project(torch.from_numpy(one["keypoints"][0][None]))[0].numpy()
        ghost = r.overlay(photo_background(), v1, f1, cam, opacity=0.5)
        Image.fromarray(draw_keypoints(ghost, kp, one["keypoint_set"])).save(IMAGES / "render_keypoints.png")


def _height_colors(v: np.ndarray) -> np.ndarray:
    """Per-vertex colours varying with height (shows per-vertex colour interpolation)."""
    t = (v[:, 1] - v[:, 1].min()) / max(np.ptp(v[:, 1]), 1e-9)
    return np.stack([0.9 - 0.6 * t, 0.3 + 0.5 * np.sin(np.pi * t), 0.3 + 0.6 * t], 1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", action="store_true", help="only write docs/images/render_*.png")
    args = parser.parse_args()
    images() if args.images else benchmark()
