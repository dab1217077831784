"""Writing results: per-person meshes (OBJ/PLY/GLB via trimesh), parameters (npz + json), images, video.

Every file is written to a temporary name next to its target and moved into place with ``os.replace``,
so an interrupted run never leaves a half-written file under the final name. Layout and keys:
docs/outputs.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tempfile
import threading
from pathlib import Path

import numpy as np

from hmr.io.atomic import atomic_path, publish

MESH_FORMATS = ("obj", "ply", "glb")
# Every per-person format of ``outputs.formats``: static meshes, then the rigged ones (hmr.io.gltf, hmr.io.bvh).
ANIMATION_FORMATS = ("skinned", "bvh")
OUTPUT_FORMATS = MESH_FORMATS + ANIMATION_FORMATS
SCHEMA_VERSION = 1
# Camera frame (OpenCV: x right, y down, z forward) -> mesh files (y up, camera looking along -z, the
# OpenGL/glTF convention most viewers expect): a 180-degree rotation about x.
CAMERA_TO_MESH = np.diag([1.0, -1.0, -1.0])


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """RGB uint8 (H, W, 3) -> PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


def write_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, color=None) -> None:
    """One mesh as OBJ, PLY or GLB (by suffix). ``vertices`` (V, 3) in the camera frame, metres, with the
    person's translation; written in the y-up frame ``CAMERA_TO_MESH`` (see docs/outputs.md).
    color: optional RGB in [0, 1] for every vertex (PLY/GLB)."""
    import trimesh

    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in MESH_FORMATS:
        raise ValueError(f"unsupported mesh format {fmt!r}; use one of {', '.join(MESH_FORMATS)}")
    mesh = trimesh.Trimesh(np.asarray(vertices, np.float64) @ CAMERA_TO_MESH.T, np.asarray(faces), process=False)
    if color is not None:
        rgba = np.append(np.clip(np.asarray(color, np.float64), 0, 1) * 255, 255).astype(np.uint8)
        mesh.visual.vertex_colors = np.tile(rgba, (len(mesh.vertices), 1))
    data = mesh.export(file_type=fmt)
    write_bytes(path, data if isinstance(data, bytes) else data.encode())


@contextlib.contextmanager
def deferred_signals(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them to the previous handlers: an
    interruption between starting a child process and taking charge of it would orphan the child."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)


class VideoWriter:
    """mp4 (H.264 via imageio-ffmpeg's bundled ffmpeg) written to a temporary file and moved into place
    by :meth:`close` (``discard()`` drops it instead)."""

    def __init__(self, path: str | os.PathLike, fps: float):
        import imageio.v2 as imageio

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".mp4")
        os.close(fd)
        self._tmp = Path(tmp)
        # macro_block_size=1 keeps odd frame sizes as they are (ffmpeg pads instead of resizing)
        self._writer = imageio.get_writer(self._tmp, fps=fps, codec="libx264", quality=7, macro_block_size=1,
                                          ffmpeg_log_level="error", pixelformat="yuv420p")  # fmt: skip
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        # yuv420p needs even sizes; the first frame starts ffmpeg (imageio has not taken charge of it yet)
        with deferred_signals() if self.frames == 0 else contextlib.nullcontext():
            self._writer.append_data(np.ascontiguousarray(frame[: h - h % 2, : w - w % 2]))
        self.frames += 1

    def close(self) -> None:
        self._writer.close()
        publish(self._tmp, self.path)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)
