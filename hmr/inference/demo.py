"""``hmr demo``: images, folders, videos and a live camera -> meshes, parameters and pictures.

Outputs per input (docs/outputs.md) are written to a staging folder and moved into place at the end, the
JSON last; an input whose ``<stem>.json`` records the same content hash is skipped (resumable), unless
``--overwrite``. Exit codes: README "Exit codes".
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from hmr.inference.detect import Detections
from hmr.inference.images import MAX_PIXELS, check_pixels, collect_inputs, is_video, read_image
from hmr.inference.pipeline import FrameResult, Pipeline
from hmr.inference.results import body_arrays, frame_arrays, frame_record, person_record
from hmr.io.exports import MESH_FORMATS, VideoWriter, write_json, write_mesh, write_npz, write_png


def error_line(err: BaseException, path=None) -> str:
    """``err`` as one line, starting with ``path`` when given and the message does not name it."""
    msg = err.args[0] if isinstance(err, KeyError) and err.args else err
    msg = " ".join(str(msg).split()) or type(err).__name__
    if path is not None and str(path) not in msg:
        msg = f"{path}: {msg}"
    return msg


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


# Staging folders are named .<name>.partial-<host>-<pid>-<random>: a later run removes those whose process is gone.
_STAGING = re.compile(r"\.partial-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+$")


@contextlib.contextmanager
def staging(out_dir: Path, name: str):
    """A hidden folder in ``out_dir`` for one input's new files. On success the previous run's JSON is removed
    first (an interruption then leaves the input not done, never old and new files under one JSON), the new
    files move in, the previous run's files the new one did not write are removed, and the JSON comes last.
    Any OSError becomes one naming ``out_dir`` (not the hidden folder)."""
    tmp = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{name}.partial-{socket.gethostname()}-{os.getpid()}-"))
        yield tmp
        new = {f.name for f in tmp.iterdir()}
        stale = previous_files(out_dir, name) - new
        record = f"{name}.json"
        (out_dir / record).unlink(missing_ok=True)
        for f in sorted(new - {record}):
            os.replace(tmp / f, out_dir / f)
        for f in stale:
            (out_dir / f).unlink(missing_ok=True)
        if record in new:
            os.replace(tmp / record, out_dir / record)
    except OSError as err:
        raise OSError(f"cannot write the outputs in {out_dir}: {err.strerror or err}") from err
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def previous_files(out_dir: Path, name: str) -> set[str]:
    """An earlier run's files of output ``name`` in ``out_dir``: those its JSON lists (plain names of this
    output only) and any ``<name>_person<N>.<mesh format>`` (left by an interrupted run)."""
    person = re.compile(rf"{re.escape(name)}_person\d+\.({'|'.join(MESH_FORMATS)})")
    found = {f.name for f in out_dir.glob(f"{glob.escape(name)}_person*") if person.fullmatch(f.name)}
    rec = read_record(out_dir / f"{name}.json") or {}
    listed = [rec.get("files")] + [p.get("files") for p in rec.get("people") or [] if isinstance(p, dict)]
    for files in listed:
        if isinstance(files, dict):
            found |= {f for f in files.values() if isinstance(f, str) and Path(f).name == f
                      and f.startswith((f"{name}.", f"{name}_"))}  # fmt: skip
    return found


def read_record(path: Path) -> dict | None:
    """A ``<stem>.json`` record, or None when missing or unreadable."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def prepare_out_dir(out: Path) -> None:
    """Create ``out`` and write a test file in it, before any work; ValueError (one line) when impossible."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".hmr-write-test-")
        try:
            os.write(fd, b"hmr")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write there ({err.strerror or err})") from None


def remove_stale_staging(out: Path) -> int:
    """Remove staging folders under ``out`` left by killed runs on this host (their process is gone); those of
    running processes are left alone. Returns how many were removed."""
    removed = 0
    for d in out.rglob(".*.partial-*"):
        m = _STAGING.search(d.name)
        if m and d.is_dir() and m["host"] == socket.gethostname() and not _alive(int(m["pid"])):
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


class Demo:
    """Runs a :class:`Pipeline` over inputs and writes their outputs under ``out_dir``."""

    def __init__(self, pipeline: Pipeline, out_dir: str | os.PathLike, mesh_formats=("obj",), overwrite: bool = False,
                 detect_every: int = 1, pictures: bool = True, max_pixels: int | None = MAX_PIXELS):  # fmt: skip
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
        self.max_pixels = max_pixels
        self.painter = Painter() if pictures else None
        self.faces = pipeline.body_model.faces.cpu().numpy()

    # ----------------------------------------------------------------------------------------- images
    def image(self, path: Path, stem: str, boxes: Detections | None = None) -> FrameResult | None:
        """One picture; returns None when skipped because its outputs already exist."""
        digest = self._pending(path, stem)
        if digest is None:
            return None
        image = read_image(path, self.max_pixels)
        frame = self.pipeline(image, boxes=boxes)
        self._write_frame(image, frame, stem, str(path), "image", digest)
        if not frame.people:
            _warn(f"{path}: nobody found in the picture (outputs written with an empty people list)")
        return frame

    def _write_frame(self, image: np.ndarray, frame: FrameResult, stem: str, source: str, kind: str,
                     digest: str | None) -> None:  # fmt: skip
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
            record = frame_record(source, kind, frame, self.pipeline.body_model, people, files)
            write_json(tmp / files["json"], {**record, "input_sha256": digest})

    def _pending(self, path: Path, stem: str) -> str | None:
        """The input's content hash when it is to be done; None when ``<stem>.json`` records the same hash
        (already done). Outputs made from other content are redone, with a warning."""
        if not path.is_file():
            raise FileNotFoundError(f"{path}: input not found")
        digest = file_sha256(path)
        json_path = self.out_dir / f"{stem}.json"
        if self.overwrite or not json_path.exists():
            return digest
        rec = read_record(json_path)
        if rec is not None and rec.get("input_sha256") == digest:
            return None
        if rec is None:
            why = "is unreadable"
        elif "input_sha256" not in rec:
            why = "records no content hash (older hmr)"
        else:
            why = "was made from other content (the file changed, or another one has the same name)"
        _warn(f"{path}: {json_path} {why}; redoing it")
        return digest

    # ------------------------------------------------------------------------------------------ video
    def video(self, path: Path, stem: str, max_frames: int | None = None) -> dict | None:
        """A video file; returns its JSON record (None when skipped)."""
        digest = self._pending(path, stem)
        if digest is None:
            return None
        frames, fps = read_video(path, self.max_pixels)
        return self.stream(frames, fps, stem, str(path), max_frames=max_frames, digest=digest)

    def stream(self, frames: Iterable[np.ndarray], fps: float, stem: str, source: str,
               on_frame: Callable[[np.ndarray, float], bool] | None = None, max_frames: int | None = None,
               digest: str | None = None) -> dict:  # fmt: skip
        """Track, fit, smooth and render a sequence of RGB frames; writes ``<stem>.mp4``, ``.json``, ``.npz``.

        on_frame(picture, fps) is called with each rendered frame (live window); returning False stops. A
        video that ends well before the frame count it declares (``frames.declared``) is warned about.
        """
        from hmr.inference.video import VideoSession

        out_dir = (self.out_dir / stem).parent
        name = Path(stem).name
        session = VideoSession(self.pipeline, fps, self.detect_every)
        with staging(out_dir, name) as tmp:
            writer = None
            stopped = False
            try:
                start = time.perf_counter()
                for i, image in enumerate(frames):
                    if max_frames is not None and i >= max_frames:
                        stopped = True
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
                        stopped = True
                        break
                if session.frames == 0:
                    raise ValueError(f"{source}: no frames could be read")
                if writer is not None:
                    writer.close()
                    writer = None
            finally:
                if writer is not None:
                    writer.discard()
            declared = getattr(frames, "declared", None)
            # containers that estimate their frame count from the duration may be off by a frame or two
            early = bool(declared) and not stopped and declared - session.frames > max(1, declared // 100)
            if early:
                _warn(f"{source}: the video ended early: {session.frames} of its {declared} declared frames "
                      "could be read (truncated or damaged); outputs cover those")  # fmt: skip
            record, arrays = session.records(source, self.faces)
            record.update({"frames_declared": declared, "ended_early": early, "input_sha256": digest})
            record["files"] = {"json": f"{name}.json", "npz": f"{name}.npz"}
            if self.painter is not None:
                record["files"]["video"] = f"{name}.mp4"
            write_npz(tmp / f"{name}.npz", arrays)
            write_json(tmp / f"{name}.json", record)
        return record


class CaptureFrames:
    """RGB frames of an OpenCV capture, iterated once; ``declared``: the frame count the file declares (None
    when unknown, as for cameras)."""

    def __init__(self, cap, first: np.ndarray | None = None):
        import cv2

        self.cap, self.first = cap, first
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.declared = int(n) if 0 < n < 1e9 else None  # cameras and some streams report 0, -1 or garbage

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            ok, frame = (True, self.first) if self.first is not None else self.cap.read()
            while ok:
                yield np.ascontiguousarray(frame[..., ::-1])
                ok, frame = self.cap.read()
        finally:
            self.cap.release()


def _capture(source):
    """cv2.VideoCapture without FFmpeg's and OpenCV's own log lines (we report failures ourselves), unless the
    user set their levels."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg is first used
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2.VideoCapture(source)


def read_video(path: Path, max_pixels: int | None = MAX_PIXELS) -> tuple[CaptureFrames, float]:
    """RGB frames of a video file and its frame rate; ValueError when it cannot be decoded or its frames are
    above ``max_pixels``."""
    import cv2

    if not path.is_file():
        raise FileNotFoundError(f"{path}: video not found")
    cap = _capture(str(path))
    try:
        if cap.isOpened():  # before the first frame is decoded
            check_pixels(
                path, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), max_pixels
            )
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            raise ValueError(f"{path}: cannot read video (empty, damaged or an unsupported codec)")
    except BaseException:
        cap.release()
        raise
    return CaptureFrames(cap, first), float(cap.get(cv2.CAP_PROP_FPS) or 30.0)


def camera_frames(index: int) -> tuple[CaptureFrames, float]:
    """Frames of camera ``index`` (OpenCV), RGB."""
    import cv2

    cap = _capture(index)
    if not cap.isOpened():
        raise RuntimeError(f"cannot open camera {index} (no such device, or no permission)")
    return CaptureFrames(cap), float(cap.get(cv2.CAP_PROP_FPS) or 30.0)


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
        except (OSError, ValueError) as err:  # ValueError: not JSON, or not text at all
            raise ValueError(f"--boxes {spec}: cannot read it as JSON ({error_line(err)})") from None
    else:
        try:
            data = [[float(v) for v in box.split(",")] for box in spec.split(";") if box.strip()]
        except ValueError:
            raise ValueError(f"--boxes {spec!r}: expected x1,y1,x2,y2[;x1,y1,x2,y2...] or a .json file") from None
    try:
        if isinstance(data, dict):
            return {k: Detections.from_boxes(v) for k, v in data.items()}
        return Detections.from_boxes(data)
    except (ValueError, TypeError) as err:
        raise ValueError(f"--boxes {spec}: expected boxes x1,y1,x2,y2 ({error_line(err)})") from None


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
    p.add_argument("--max-frames", type=_count(1), metavar="N", help="stop videos/camera after N frames")
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
    p.add_argument("--detect-every", type=_count(1), metavar="K", help="video: detect every K frames, track between "
                   "(default 1 for files, 5 for the camera)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs exist (default: skip them)")
    p.add_argument("--max-pixels", type=_count(0), default=MAX_PIXELS, metavar="N",
                   help=f"refuse larger images and video frames, from their header (default {MAX_PIXELS}; 0: no limit)")  # fmt: skip
    p.set_defaults(run=run)


def _count(low: int):
    """argparse type: an integer >= ``low`` (``5e7`` accepted)."""

    def parse(text: str) -> int:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value != int(value) or value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
        return int(value)

    return parse


def run(args: argparse.Namespace) -> int:
    """0: every input done (or already done); 1: some failed, the others done; 2: nothing could be done."""
    if args.camera is None and not args.paths:
        raise ValueError("give images, videos or folders to process, or --camera N")
    boxes = _parse_boxes(args.boxes)
    inputs, missing = [], []
    for p in args.paths:
        try:
            inputs += collect_inputs([p])
        except FileNotFoundError as err:
            missing.append(err)
    if args.paths and not inputs:
        if missing:
            raise FileNotFoundError("; ".join(map(str, missing)))
        raise ValueError(f"no images or videos found in {', '.join(map(str, args.paths))}")
    prepare_out_dir(args.out)
    if n := remove_stale_staging(args.out):
        _warn(f"removed {n} unfinished output folder(s) of interrupted runs in {args.out}")
    live = args.camera is not None
    pipeline = Pipeline(smpl=args.smpl, smpl_j19=args.smpl_j19, checkpoint=args.checkpoint, refine=args.refine, device=args.device,
                        focal=args.focal, intrinsics=args.intrinsics, tiles=not args.no_tiles,
                        threshold=args.threshold)  # fmt: skip
    detect_every = args.detect_every or (5 if live else 1)
    demo = Demo(pipeline, args.out, args.mesh_format, args.overwrite, detect_every, max_pixels=args.max_pixels)
    if live:
        frames, fps = camera_frames(args.camera)
        window = None if args.no_window else Window(f"hmr demo: camera {args.camera}")
        pipeline.detector.tiles = False
        demo.stream(
            frames, fps, f"camera{args.camera}", f"camera {args.camera}", on_frame=window, max_frames=args.max_frames
        )
        print(f"hmr demo: 1 done, 0 already done, 0 failed; outputs in {args.out}")
        return 0
    for err in missing:
        _warn(f"{error_line(err)}; skipped")
    done = skipped = 0
    failed = len(missing)
    try:
        for path, stem in zip(inputs, output_stems(inputs, args.paths), strict=True):
            try:
                if is_video(path):
                    pipeline.detector.tiles = False
                    try:
                        res = demo.video(path, stem, args.max_frames)
                    finally:
                        pipeline.detector.tiles = not args.no_tiles
                else:
                    res = demo.image(path, stem, _boxes_for(boxes, path))
            except Exception as err:  # one bad input never stops the others
                if args.debug:
                    traceback.print_exc()
                _warn(f"{error_line(err, path)}; skipped")
                failed += 1
                continue
            if res is None:
                skipped += 1
            else:
                done += 1
                print(f"{path}: done -> {args.out / stem}.json", flush=True)
    finally:
        print(f"hmr demo: {done} done, {skipped} already done, {failed} failed; outputs in {args.out}", flush=True)
    if failed and not done and not skipped:
        print("hmr: error: no input could be processed", file=sys.stderr)
        return 2
    return 1 if failed else 0
