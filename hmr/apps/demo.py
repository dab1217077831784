"""``hmr demo``: images, folders, videos and a live camera -> meshes, parameters and pictures.

Outputs per input (docs/outputs.md) are written to a staging folder and moved into place at the end, the
JSON last; an input whose ``<stem>.json`` records the same content hash is skipped (resumable), unless
``--overwrite``. Exit codes: README "Exit codes".
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hmr import config as config_io
from hmr.apps.errors import error_line, warn
from hmr.apps.inputs import boxes_for, collect_inputs, output_stems, parse_boxes
from hmr.apps.live import Window
from hmr.apps.outputs import Painter, file_sha256, palette, prepare_out_dir, read_record, remove_stale_staging, staging
from hmr.detection import Detections
from hmr.io.exports import (
    ANIMATION_FORMATS,
    MESH_FORMATS,
    OUTPUT_FORMATS,
    VideoWriter,
    write_json,
    write_mesh,
    write_npz,
    write_png,
)
from hmr.io.images import MAX_PIXELS, read_image
from hmr.io.video import camera_frames, is_video, read_video
from hmr.models.precision import PRECISIONS
from hmr.pipeline import FrameResult, Pipeline, PipelineConfig
from hmr.pipeline.animation import image_animation, video_animations
from hmr.pipeline.config import RUNTIMES, OutputsSection
from hmr.pipeline.records import body_arrays, frame_arrays, frame_record, person_record


@dataclass
class ImageJob:
    """One picture computed and not yet written."""

    path: Path
    stem: str
    image: np.ndarray
    frame: FrameResult
    digest: str


class Demo:
    """Runs a :class:`Pipeline` over inputs and writes their outputs under ``out_dir``. ``outputs`` and
    ``detect_every`` default to the pipeline config's ``outputs`` and ``tracking.detect_every`` (given here,
    they vary per run without building another pipeline)."""

    def __init__(self, pipeline: Pipeline, out_dir, outputs: OutputsSection | None = None,
                 detect_every: int | None = None):  # fmt: skip
        self.pipeline = pipeline
        self.out_dir = Path(out_dir)
        self.outputs = outputs or pipeline.config.outputs
        self._detect_every = detect_every or pipeline.config.tracking.detect_every
        self.painter = Painter() if self.outputs.pictures else None
        self.faces = pipeline.body_model.faces.cpu().numpy()

    def detect_every(self, live: bool) -> int:
        """Frames between detections in video: as configured, else 1 for files and 5 for a camera."""
        return self._detect_every or (5 if live else 1)

    # ----------------------------------------------------------------------------------------- images
    def image(self, path: Path, stem: str, boxes: Detections | None = None) -> FrameResult | None:
        """One picture; returns None when skipped because its outputs already exist."""
        job = self.compute_image(path, stem, boxes)
        if job is None:
            return None
        self.write_image(job)
        return job.frame

    def compute_image(self, path: Path, stem: str, boxes: Detections | None = None) -> ImageJob | None:
        """The pipeline's part of :meth:`image` (None: already done); :meth:`write_image` writes it, which
        ``hmr demo`` runs in a writer thread beside the next input's compute."""
        digest = self._pending(path, stem)
        if digest is None:
            return None
        image = read_image(path, self.outputs.max_pixels)
        return ImageJob(path, stem, image, self.pipeline(image, boxes=boxes), digest)

    def write_image(self, job: ImageJob) -> None:
        self._write_frame(job.image, job.frame, job.stem, str(job.path), "image", job.digest)
        if not job.frame.people:
            warn(f"{job.path}: nobody found in the picture (outputs written with an empty people list)")

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
                    for fmt in (f for f in self.outputs.formats if f in MESH_FORMATS):
                        pfiles[fmt] = f"{name}_person{i}.{fmt}"
                        write_mesh(tmp / pfiles[fmt], b["vertices"], self.faces, color=palette(i))
                    if set(self.outputs.formats) & set(ANIMATION_FORMATS):
                        anim = image_animation(p.mesh, self.pipeline.body_model, frame.camera, palette(i), name=f"person{i}")
                        pfiles.update(write_animation(tmp, f"{name}_person{i}", anim.animation, self.outputs.formats, False))
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
        if self.outputs.overwrite or not json_path.exists():
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
        warn(f"{path}: {json_path} {why}; redoing it")
        return digest

    # ------------------------------------------------------------------------------------------ video
    def video(self, path: Path, stem: str, max_frames: int | None = None) -> dict | None:
        """A video file; returns its JSON record (None when skipped)."""
        digest = self._pending(path, stem)
        if digest is None:
            return None
        frames, fps = read_video(path, self.outputs.max_pixels)
        return self.stream(frames, fps, stem, str(path), max_frames=max_frames, digest=digest)

    def stream(self, frames: Iterable[np.ndarray], fps: float, stem: str, source: str,
               on_frame: Callable[[np.ndarray, float], bool] | None = None, max_frames: int | None = None,
               digest: str | None = None, live: bool = False) -> dict:  # fmt: skip
        """Track, fit, smooth and render a sequence of RGB frames; writes ``<stem>.mp4``, ``.json``, ``.npz``.

        on_frame(picture, fps) is called with each rendered frame (live window); returning False stops. A
        video that ends well before the frame count it declares (``frames.declared``) is warned about.
        """
        from hmr.pipeline.video import VideoSession

        out_dir = (self.out_dir / stem).parent
        name = Path(stem).name
        session = VideoSession(self.pipeline, fps, self.detect_every(live))
        with staging(out_dir, name) as tmp:
            writer = None
            stopped = False
            try:
                start = time.perf_counter()
                more = []  # set when a frame beyond max_frames exists (read, never processed)

                def capped():
                    for i, image in enumerate(frames):
                        if max_frames is not None and i >= max_frames:
                            more.append(True)
                            return
                        yield image

                # the 2D stage reads and observes frame i + 1 while frame i is fitted and rendered here; live, a
                # new person's cold fit runs beside both instead of freezing the picture
                for i, (image, frame, smoothed) in enumerate(session.run(capped(), defer_cold=live)):
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
                stopped = stopped or bool(more)
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
                warn(f"{source}: the video ended early: {session.frames} of its {declared} declared frames "
                      "could be read (truncated or damaged); outputs cover those")  # fmt: skip
            record, arrays = session.records(source, self.faces)
            if set(self.outputs.formats) & set(ANIMATION_FORMATS):
                tracks = video_animations(session.rows, self.pipeline.body_model, fps, camera=session.last.camera,
                                          colors={r["track_id"]: palette(r["track_id"]) for r in session.rows})  # fmt: skip
                for person in record["people"]:
                    tid = person["track_id"]
                    person["files"] = {} if tid not in tracks else write_animation(
                        tmp, f"{name}_track{tid}", tracks[tid].animation, self.outputs.formats, True)  # fmt: skip
            record.update({"frames_declared": declared, "ended_early": early, "input_sha256": digest})
            record["files"] = {"json": f"{name}.json", "npz": f"{name}.npz"}
            if self.painter is not None:
                record["files"]["video"] = f"{name}.mp4"
            write_npz(tmp / f"{name}.npz", arrays)
            write_json(tmp / f"{name}.json", record)
        return record


def write_animation(folder: Path, prefix: str, animation, formats, video: bool) -> dict[str, str]:
    """The rigged files of one person (``<prefix>_skinned.glb``; a video track's ``<prefix>.glb``) and/or
    ``<prefix>.bvh`` that ``formats`` asks for; returns format -> file name."""
    from hmr.io.bvh import write_bvh
    from hmr.io.gltf import write_skinned_glb

    names = {"skinned": f"{prefix}.glb" if video else f"{prefix}_skinned.glb", "bvh": f"{prefix}.bvh"}
    writers = {"skinned": write_skinned_glb, "bvh": write_bvh}
    files = {f: names[f] for f in formats if f in ANIMATION_FORMATS}
    for fmt, file in files.items():
        writers[fmt](folder / file, animation)
    return files


# ----------------------------------------------------------------------------------------------- CLI
# Flags of ``hmr demo`` -> the config keys they set (flags win over --config, dotted overrides over flags).
FLAG_KEYS = {
    "device": "device", "focal": "camera.focal", "intrinsics": "camera.intrinsics", "checkpoint": "network.checkpoint",
    "refine": "network.refine", "smpl": "body.smpl", "smpl_j19": "body.smpl_j19", "formats": "outputs.formats",
    "tiles": "detector.tiles", "threshold": "detector.threshold", "detect_every": "tracking.detect_every",
    "overwrite": "outputs.overwrite", "max_pixels": "outputs.max_pixels", "runtime": "network.runtime",
    "precision": "network.precision",
}  # fmt: skip


DESCRIPTION = (
    "Detect people, estimate their 3D body meshes and write meshes, parameters and pictures (docs/outputs.md). "
    "Without --checkpoint the meshes come from fitting the body model to BlazePose keypoints; nothing is "
    "downloaded. Every setting is in the pipeline config (hmr config show): give a YAML file with --config and "
    "change single keys with section.key=value arguments."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.add_argument("paths", nargs="*", help="images, videos or folders (searched recursively), and section.key=value overrides")
    p.add_argument("--config", type=Path, help="pipeline config YAML (hmr config show writes one)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--camera", type=int, metavar="N", help="live camera N instead of files")
    p.add_argument("--no-window", action="store_true", help="live camera without a preview window")
    p.add_argument("--max-frames", type=_count(1), metavar="N", help="stop videos/camera after N frames")
    p.add_argument("--boxes", help="person boxes instead of detection: x1,y1,x2,y2[;...] or a .json file")
    g = p.add_argument_group("pipeline settings (shortcuts for config keys)")
    g.add_argument("--device", help="cpu, cuda or mps (device; default cpu)")
    g.add_argument("--focal", type=float, help="focal length in pixels (camera.focal; default the image diagonal)")
    g.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                   help="camera intrinsics in pixels (camera.intrinsics)")  # fmt: skip
    g.add_argument("--checkpoint", "--model", dest="checkpoint", help="network checkpoint or registry name (network.checkpoint)")
    g.add_argument("--refine", action="store_true", default=None, help="with --checkpoint: refine by fitting to the keypoints")
    g.add_argument("--smpl", help="SMPL model file (.pkl/.npz) instead of the bundled default body model (body.smpl)")
    g.add_argument("--smpl-j19", help="with --smpl and --checkpoint: SMPL_to_J19.pkl (body.smpl_j19)")
    g.add_argument("--runtime", choices=RUNTIMES, help="network runtime: torch, or onnx for an exported .onnx "
                   "checkpoint (network.runtime; default auto: by the checkpoint's suffix)")  # fmt: skip
    g.add_argument("--precision", choices=PRECISIONS, help="network precision: fp32, bf16, or auto: bf16 where the "
                   "CPU/GPU has it natively (network.precision)")  # fmt: skip
    g.add_argument("--formats", "--mesh-format", dest="formats", nargs="+", choices=OUTPUT_FORMATS,
                   help="files per person: obj ply glb meshes, skinned (animated .glb), bvh (outputs.formats)")  # fmt: skip
    g.add_argument("--no-tiles", dest="tiles", action="store_false", default=None,
                   help="images: skip the tiled pass that finds small people (detector.tiles=false)")  # fmt: skip
    g.add_argument("--threshold", type=float, help="detector score threshold (detector.threshold; default 0.2)")
    g.add_argument("--detect-every", type=_count(1), metavar="K", help="video: detect every K frames, track between "
                   "(tracking.detect_every; default 1 for files, 5 for the camera)")  # fmt: skip
    g.add_argument("--overwrite", action="store_true", default=None, help="redo inputs whose outputs exist (outputs.overwrite)")
    g.add_argument("--max-pixels", type=_count(0), metavar="N",
                   help=f"refuse larger images and video frames, from their header (outputs.max_pixels; default {MAX_PIXELS}; 0: no limit)")  # fmt: skip
    p.set_defaults(run=run, overrides=[])


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


def resolve_config(args: argparse.Namespace, overrides: list[str]) -> PipelineConfig:
    """Defaults, then ``--config``, then the flags given, then the dotted overrides."""
    flags: dict = {}
    for dest, key in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            config_io.set_dotted(flags, key, list(value) if isinstance(value, (list, tuple)) else value)
    return config_io.load(PipelineConfig, args.config, overrides, flags)


def run(args: argparse.Namespace) -> int:
    """0: every input done (or already done); 1: some failed, the others done; 2: nothing could be done."""
    paths, overrides = config_io.split_overrides(args.paths)
    cfg = resolve_config(args, [*overrides, *args.overrides])
    if args.print_config:
        print(config_io.dump(cfg), end="")
        return 0
    paths = [Path(p) for p in paths]
    if args.camera is None and not paths:
        raise ValueError("give images, videos or folders to process, or --camera N")
    boxes = parse_boxes(args.boxes)
    inputs, missing = [], []
    for p in paths:
        try:
            inputs += collect_inputs([p])
        except FileNotFoundError as err:
            missing.append(err)
    if paths and not inputs:
        if missing:
            raise FileNotFoundError("; ".join(map(str, missing)))
        raise ValueError(f"no images or videos found in {', '.join(map(str, paths))}")
    prepare_out_dir(args.out)
    if n := remove_stale_staging(args.out):
        warn(f"removed {n} unfinished output folder(s) of interrupted runs in {args.out}")
    pipeline = Pipeline(cfg)
    demo = Demo(pipeline, args.out, cfg.outputs, cfg.tracking.detect_every)
    if args.camera is not None:
        frames, fps = camera_frames(args.camera)
        window = None if args.no_window else Window(f"hmr demo: camera {args.camera}")
        demo.stream(frames, fps, f"camera{args.camera}", f"camera {args.camera}", on_frame=window,
                    max_frames=args.max_frames, live=True)  # fmt: skip
        print(f"hmr demo: 1 done, 0 already done, 0 failed; outputs in {args.out}")
        return 0
    for err in missing:
        warn(f"{error_line(err)}; skipped")
    counts = {"done": 0, "skipped": 0, "failed": len(missing)}

    def attempt(path: Path, work: Callable[[], object]) -> tuple[object, bool]:
        """(result, True), or (None, False) once a failure is reported: one bad input never stops the others."""
        try:
            return work(), True
        except Exception as err:
            if args.debug:
                traceback.print_exc()
            warn(f"{error_line(err, path)}; skipped")
            counts["failed"] += 1
            return None, False

    def count(path: Path, stem: str, result) -> None:
        if result is None:
            counts["skipped"] += 1
        else:
            counts["done"] += 1
            print(f"{path}: done -> {args.out / stem}.json", flush=True)

    # A picture's files are written (rendering included) by a writer thread while the next input is
    # computed: one write at a time; a video starts once the writes before it have ended.
    writer = ThreadPoolExecutor(1, thread_name_prefix="hmr-demo-write")
    writing: list[tuple[Path, str, Future]] = []

    def finish_writing() -> None:
        while writing:
            path, stem, fut = writing.pop()
            _, ok = attempt(path, fut.result)
            if ok:
                count(path, stem, True)

    try:
        for path, stem in zip(inputs, output_stems(inputs, paths), strict=True):
            if is_video(path):
                finish_writing()
                rec, ok = attempt(path, lambda: demo.video(path, stem, args.max_frames))  # noqa: B023
            else:
                rec, ok = attempt(path, lambda: demo.compute_image(path, stem, boxes_for(boxes, path)))  # noqa: B023
                finish_writing()
                if ok and rec is not None:
                    writing.append((path, stem, writer.submit(demo.write_image, rec)))
                    continue
            if ok:
                count(path, stem, rec)
        finish_writing()
    finally:
        for *_, fut in writing:  # interrupted: the write in flight completes (or fails) as a whole first
            fut.exception()
        writer.shutdown()
        done, skipped, failed = counts["done"], counts["skipped"], counts["failed"]
        print(f"hmr demo: {done} done, {skipped} already done, {failed} failed; outputs in {args.out}", flush=True)
    if failed and not done and not skipped:
        print("hmr: error: no input could be processed", file=sys.stderr)
        return 2
    return 1 if failed else 0
