"""``hmr demo``: images, folders, videos and a live camera -> meshes, parameters and pictures.

Outputs per input (docs/outputs.md) are written to a staging folder and moved into place at the end, the
JSON last; an input whose ``<stem>.json`` exists is skipped (resumable), unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from hmr.inference.detect import Detections
from hmr.inference.images import collect_inputs, is_video, read_image
from hmr.inference.pipeline import FrameResult, Pipeline
from hmr.inference.results import body_arrays, frame_arrays, frame_record, person_record
from hmr.io.exports import MESH_FORMATS, VideoWriter, write_json, write_mesh, write_npz, write_png


def _warn(msg: str) -> None:
    print(f"hmr: warning: {msg}", file=sys.stderr)


def _palette(i: int):
    from hmr.render import DEFAULT_PALETTE

    return DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)]


class Painter:
    """Overlay and side-view pictures; one renderer per image size. Rendering failures (no OpenGL)
    are reported once and the pictures skipped, the rest of the outputs still written."""

    def __init__(self):
        self._renderers: dict[tuple[int, int], object] = {}
        self.available = True

    def _renderer(self, w: int, h: int):
        from hmr.render import Renderer, RenderUnavailableError

        if (w, h) not in self._renderers:
            try:
                self._renderers[(w, h)] = Renderer(w, h)
            except RenderUnavailableError as err:
                self.available = False
                _warn(f"{err}; overlay and side-view pictures are skipped")
                return None
        return self._renderers[(w, h)]

    def overlay(self, image: np.ndarray, frame: FrameResult, meshes: list[tuple[int, np.ndarray]], faces) -> np.ndarray:
        """Meshes (colour index: person index or track id, camera-frame vertices with translation) over the
        image; boxes of people without a mesh drawn in their colour."""
        import cv2

        out = image.copy()
        r = self._renderer(*frame.image_size) if self.available and meshes else None
        if r is not None:
            out = r.overlay(out, [v for _, v in meshes], faces, frame.camera, colors=[_palette(i) for i, _ in meshes])
        for i, p in enumerate(frame.people):
            if p.mesh is None:
                c = tuple(int(255 * x) for x in _palette(i if p.track_id is None else p.track_id))
                cv2.rectangle(out, tuple(int(v) for v in p.box[:2]), tuple(int(v) for v in p.box[2:]), c, 2)
        return out

    def side(self, frame: FrameResult, meshes: list[tuple[int, np.ndarray]], faces) -> np.ndarray | None:
        r = self._renderer(*frame.image_size) if self.available and meshes else None
        if r is None:
            return None
        return r.side_view([v for _, v in meshes], faces, frame.camera, colors=[_palette(i) for i, _ in meshes])


@contextlib.contextmanager
def staging(out_dir: Path, stem: str):
    """A temporary folder in ``out_dir``; on success its files are moved to ``out_dir`` (``.json`` last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{Path(stem).name}.partial-"))
    try:
        yield tmp
        files = sorted(tmp.iterdir(), key=lambda f: f.suffix == ".json")
        for f in files:
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Demo:
    """Runs a :class:`Pipeline` over inputs and writes their outputs under ``out_dir``."""

    def __init__(self, pipeline: Pipeline, out_dir: str | os.PathLike, mesh_formats=("obj",), overwrite: bool = False,
                 detect_every: int = 1, pictures: bool = True):  # fmt: skip
        bad = [f for f in mesh_formats if f not in MESH_FORMATS]
        if bad:
            raise ValueError(f"unknown mesh format(s) {bad}; choose from {', '.join(MESH_FORMATS)}")
        if detect_every < 1:
            raise ValueError(f"--detect-every must be >= 1, got {detect_every}")
        self.pipeline = pipeline
        self.out_dir = Path(out_dir)
        self.mesh_formats = tuple(mesh_formats)
        self.overwrite = overwrite
        self.detect_every = detect_every
        self.painter = Painter() if pictures else None
        self.faces = pipeline.body_model.faces.cpu().numpy()

    # ----------------------------------------------------------------------------------------- images
    def image(self, path: Path, stem: str, boxes: Detections | None = None) -> FrameResult | None:
        """One picture; returns None when skipped because its outputs already exist."""
        if self._done(stem):
            return None
        image = read_image(path)
        frame = self.pipeline(image, boxes=boxes)
        self._write_frame(image, frame, stem, str(path), "image")
        if not frame.people:
            _warn(f"{path}: nobody found in the picture (outputs written with an empty people list)")
        return frame

    def _write_frame(self, image: np.ndarray, frame: FrameResult, stem: str, source: str, kind: str) -> None:
        out_dir = (self.out_dir / stem).parent
        name = Path(stem).name
        bodies = [body_arrays(p, self.pipeline.body_model) if p.mesh is not None else None for p in frame.people]
        meshes = [(i, b["vertices"]) for i, b in enumerate(bodies) if b is not None]
        with staging(out_dir, name) as tmp:
            files = {"json": f"{name}.json", "npz": f"{name}.npz"}
            people = []
            for i, (p, b) in enumerate(zip(frame.people, bodies, strict=True)):
                pfiles = {}
                if b is not None:
                    for fmt in self.mesh_formats:
                        pfiles[fmt] = f"{name}_person{i}.{fmt}"
                        write_mesh(tmp / pfiles[fmt], b["vertices"], self.faces, color=_palette(i))
                people.append(person_record(i, p, b, pfiles))
            if self.painter is not None:
                write_png(tmp / f"{name}_overlay.png", self.painter.overlay(image, frame, meshes, self.faces))
                files["overlay"] = f"{name}_overlay.png"
                side = self.painter.side(frame, meshes, self.faces)
                if side is not None:
                    write_png(tmp / f"{name}_side.png", side)
                    files["side"] = f"{name}_side.png"
            write_npz(tmp / files["npz"], frame_arrays(frame, bodies, self.faces))
            write_json(tmp / files["json"], frame_record(source, kind, frame, self.pipeline.body_model, people, files))

    def _done(self, stem: str) -> bool:
        return not self.overwrite and (self.out_dir / f"{stem}.json").is_file()

    # ------------------------------------------------------------------------------------------ video
    def video(self, path: Path, stem: str, max_frames: int | None = None) -> dict | None:
        """A video file; returns its JSON record (None when skipped)."""
        if self._done(stem):
            return None
        frames, fps = read_video(path)
        return self.stream(frames, fps, stem, str(path), max_frames=max_frames)

    def stream(self, frames: Iterable[np.ndarray], fps: float, stem: str, source: str,
               on_frame: Callable[[np.ndarray, float], bool] | None = None, max_frames: int | None = None) -> dict:  # fmt: skip
        """Track, fit, smooth and render a sequence of RGB frames; writes ``<stem>.mp4``, ``.json``, ``.npz``.

        on_frame(picture, fps) is called with each rendered frame (live window); returning False stops.
        """
        from hmr.inference.video import VideoSession

        out_dir = (self.out_dir / stem).parent
        name = Path(stem).name
        session = VideoSession(self.pipeline, fps, self.detect_every)
        with staging(out_dir, name) as tmp:
            writer = None
            try:
                start = time.perf_counter()
                for i, image in enumerate(frames):
                    if max_frames is not None and i >= max_frames:
                        break
                    frame, smoothed = session.step(image)
                    meshes = [(tid, v) for tid, v in smoothed.items()]
                    picture = image
                    if self.painter is not None:
                        picture = self.painter.overlay(image, frame, meshes, self.faces)
                        if writer is None:
                            writer = VideoWriter(tmp / f"{name}.mp4", fps)
                        writer.write(picture)
                    live_fps = (i + 1) / max(time.perf_counter() - start, 1e-9)
                    if on_frame is not None and on_frame(picture, live_fps) is False:
                        break
                if session.frames == 0:
                    raise ValueError(f"{source}: no frames could be read")
                if writer is not None:
                    writer.close()
                    writer = None
            finally:
                if writer is not None:
                    writer.discard()
            record, arrays = session.records(source, self.faces)
            record["files"] = {"json": f"{name}.json", "npz": f"{name}.npz"}
            if self.painter is not None:
                record["files"]["video"] = f"{name}.mp4"
            write_npz(tmp / f"{name}.npz", arrays)
            write_json(tmp / f"{name}.json", record)
        return record


def read_video(path: Path) -> tuple[Iterator[np.ndarray], float]:
    """RGB frames of a video file and its frame rate; ValueError when it cannot be decoded."""
    import cv2

    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise ValueError(f"{path}: cannot read video (empty, damaged or an unsupported codec)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0

    def frames():
        try:
            frame = first
            while frame is not None:
                yield np.ascontiguousarray(frame[..., ::-1])
                ok, frame = cap.read()
                if not ok:
                    frame = None
        finally:
            cap.release()

    return frames(), float(fps)


def camera_frames(index: int) -> tuple[Iterator[np.ndarray], float]:
    """Frames of camera ``index`` (OpenCV), RGB."""
    import cv2

    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise RuntimeError(f"cannot open camera {index} (no such device, or no permission)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0

    def frames():
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield np.ascontiguousarray(frame[..., ::-1])
        finally:
            cap.release()

    return frames(), float(fps)


class Window:
    """Live preview with matplotlib (OpenCV here is the headless build). Closing the window or pressing
    q/Escape stops."""

    def __init__(self, title: str):
        import matplotlib

        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and sys.platform.startswith("linux"):
            raise RuntimeError("no display for the live window; run with --no-window (outputs are still written)")
        import matplotlib.pyplot as plt

        matplotlib.rcParams["toolbar"] = "None"
        self.plt = plt
        self.fig, self.ax = plt.subplots(num=title)
        self.ax.axis("off")
        self.img = None
        self.open = True
        self.fig.canvas.mpl_connect("close_event", lambda _: setattr(self, "open", False))
        self.fig.canvas.mpl_connect(
            "key_press_event", lambda e: e.key in ("q", "escape") and setattr(self, "open", False)
        )
        plt.ion()
        plt.show()

    def __call__(self, picture: np.ndarray, fps: float) -> bool:
        if self.img is None:
            self.img = self.ax.imshow(picture)
        else:
            self.img.set_data(picture)
        self.ax.set_title(f"{fps:.1f} fps")
        self.plt.pause(0.001)
        return self.open


# ----------------------------------------------------------------------------------------------- CLI
def _parse_boxes(spec: str | None) -> dict | list | None:
    """``--boxes``: a JSON file with a list of [x1, y1, x2, y2] (every input) or {input name or stem: list},
    or boxes inline as "x1,y1,x2,y2;x1,y1,x2,y2"."""
    if spec is None:
        return None
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"--boxes {spec}: cannot read it as JSON ({err})") from None
    else:
        try:
            data = [[float(v) for v in box.split(",")] for box in spec.split(";") if box.strip()]
        except ValueError:
            raise ValueError(f"--boxes {spec!r}: expected x1,y1,x2,y2[;x1,y1,x2,y2...] or a .json file") from None
    if isinstance(data, dict):
        return {k: Detections.from_boxes(v) for k, v in data.items()}
    return Detections.from_boxes(data)


def _boxes_for(boxes, path: Path) -> Detections | None:
    if boxes is None or isinstance(boxes, Detections):
        return boxes
    for key in (str(path), path.name, path.stem):
        if key in boxes:
            return boxes[key]
    return None


def output_stems(inputs: list[Path], roots: list[Path]) -> list[str]:
    """Output name (relative path without suffix) per input: folders keep their tree; names that would
    collide (a.jpg and a.png) get their extension appended (a_jpg, a_png)."""
    stems = []
    for p in inputs:
        root = next((r for r in roots if r.is_dir() and p.is_relative_to(r)), None)
        rel = p.relative_to(root) if root is not None else Path(p.name)
        stems.append(rel.with_suffix(""))
    counts: dict[Path, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [
        (s.with_name(f"{s.name}_{p.suffix.lstrip('.').lower()}") if counts[s] > 1 else s).as_posix()
        for s, p in zip(stems, inputs, strict=True)
    ]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="3D people from images, folders, videos or a camera",
        description="Detect people, estimate their 3D body meshes and write meshes, parameters and pictures "
        "(docs/outputs.md). Without --checkpoint the meshes come from fitting the body model to BlazePose "
        "keypoints; nothing is downloaded.",
    )
    p.add_argument("paths", nargs="*", type=Path, help="images, videos or folders (searched recursively)")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--camera", type=int, metavar="N", help="live camera N instead of files")
    p.add_argument("--no-window", action="store_true", help="live camera without a preview window")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop videos/camera after N frames")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")
    p.add_argument(
        "--focal", type=float, help="focal length in pixels (default: the image diagonal, see docs/outputs.md)"
    )
    p.add_argument(
        "--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), help="camera intrinsics (pixels)"
    )
    p.add_argument("--boxes", help="person boxes instead of detection: x1,y1,x2,y2[;...] or a .json file")
    p.add_argument("--checkpoint", "--model", dest="checkpoint", help="HMR 2.0 checkpoint or registry name")
    p.add_argument("--refine", action="store_true", help="with --checkpoint: refine by fitting to the keypoints")
    p.add_argument("--smpl", help="SMPL model file (.pkl/.npz) to use instead of the bundled default body model")
    p.add_argument("--smpl-j19", help="with --smpl and --checkpoint: SMPL_to_J19.pkl (HMR 2.0's 19 extra keypoints)")
    p.add_argument("--mesh-format", nargs="+", default=["obj"], choices=MESH_FORMATS, help="mesh files per person")
    p.add_argument("--no-tiles", action="store_true", help="images: skip the tiled pass that finds small people")
    p.add_argument("--threshold", type=float, help="detector score threshold (default 0.2, see docs/detection.md)")
    p.add_argument("--detect-every", type=int, metavar="K", help="video: detect every K frames, track between "
                   "(default 1 for files, 5 for the camera)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs exist (default: skip them)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.camera is None and not args.paths:
        raise ValueError("give images, videos or folders to process, or --camera N")
    boxes = _parse_boxes(args.boxes)
    inputs = collect_inputs(args.paths) if args.paths else []
    if args.paths and not inputs:
        raise ValueError(f"no images or videos found in {', '.join(map(str, args.paths))}")
    live = args.camera is not None
    pipeline = Pipeline(smpl=args.smpl, smpl_j19=args.smpl_j19, checkpoint=args.checkpoint, refine=args.refine, device=args.device,
                        focal=args.focal, intrinsics=args.intrinsics, tiles=not args.no_tiles,
                        threshold=args.threshold)  # fmt: skip
    detect_every = args.detect_every or (5 if live else 1)
    demo = Demo(pipeline, args.out, args.mesh_format, args.overwrite, detect_every)
    if live:
        frames, fps = camera_frames(args.camera)
        window = None if args.no_window else Window(f"hmr demo: camera {args.camera}")
        pipeline.detector.tiles = False
        demo.stream(
            frames, fps, f"camera{args.camera}", f"camera {args.camera}", on_frame=window, max_frames=args.max_frames
        )
        return 0
    done = failed = skipped = 0
    for path, stem in zip(inputs, output_stems(inputs, args.paths), strict=True):
        try:
            if is_video(path):
                pipeline.detector.tiles = False
                res = demo.video(path, stem, args.max_frames)
                pipeline.detector.tiles = not args.no_tiles
            else:
                res = demo.image(path, stem, _boxes_for(boxes, path))
        except (ValueError, OSError) as err:
            _warn(f"{err}; skipped")
            failed += 1
            continue
        if res is None:
            skipped += 1
        else:
            done += 1
            print(f"{path}: done -> {args.out / stem}.json", flush=True)
    print(f"hmr demo: {done} done, {skipped} already done, {failed} failed; outputs in {args.out}")
    if failed and not done and not skipped:
        raise RuntimeError("no input could be processed")
    return 0
