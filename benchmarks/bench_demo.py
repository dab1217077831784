"""``hmr demo`` speed on CPU: per-stage timing and end-to-end fps for 640x480 video, 1 and 3 people.

Frames: Debian opencv-doc's vtest.avi (``apt-get install opencv-doc``), frames 600-659 resized to 640x480;
the detector's output is cut to the 1 or 3 largest people so that both cases use the same real frames.
Modes: ``video`` (``hmr demo clip.mp4``: detection every frame) and ``live`` (``hmr demo --camera``:
detection every 5th frame, tracking from landmarks in between). Writes docs/benchmarks.md.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.report import machine, table, write_section  # noqa: E402

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
FIRST, COUNT = 600, 40
CAMERA_FPS = 30.0  # the deferred pass reads frames no faster than a camera would deliver them


def frames_640x480() -> list[np.ndarray]:
    import cv2

    if not VTEST.is_file():
        raise SystemExit(f"{VTEST} not found: apt-get install opencv-doc")
    cap = cv2.VideoCapture(str(VTEST))
    cap.set(cv2.CAP_PROP_POS_FRAMES, FIRST)
    out = []
    for _ in range(COUNT):
        ok, f = cap.read()
        if not ok:
            break
        out.append(np.ascontiguousarray(cv2.resize(f, (640, 480), interpolation=cv2.INTER_AREA)[..., ::-1]))
    return out


def paced(frames: list[np.ndarray], fps: float):
    """``frames`` no faster than a camera delivering ``fps`` frames per second."""
    due = time.perf_counter()
    for f in frames:
        time.sleep(max(0.0, due - time.perf_counter()))
        due = max(due + 1 / fps, time.perf_counter())
        yield f


class Timers:
    """Wraps callables to add their wall time to named stages."""

    def __init__(self):
        self.total = defaultdict(float)

    def wrap(self, stage: str, fn):
        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.total[stage] += time.perf_counter() - start

        return timed


def run(frames: list[np.ndarray], people: int, detect_every: int) -> dict:
    import hmr.fitting
    from hmr.apps.outputs import Painter
    from hmr.detection import Detections
    from hmr.pipeline import Pipeline, PipelineConfig
    from hmr.pipeline.config import DetectorSection
    from hmr.pipeline.video import VideoSession

    pipe = Pipeline(PipelineConfig(detector=DetectorSection(tiles=False)))
    timers = Timers()
    detect = pipe.detector.__call__

    def top(image, tiles=None):
        det = detect(image, tiles=tiles)
        keep = np.argsort(-(det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1]))[:people]
        return Detections(det.boxes[keep], det.scores[keep])

    pipe.detector = type("TopDetector", (), {"__call__": staticmethod(timers.wrap("detect", top))})()
    pipe.pose.from_roi = timers.wrap("keypoints", pipe.pose.from_roi)
    step = hmr.fitting.SequenceFitter.step
    hmr.fitting.SequenceFitter.step = timers.wrap("fit", step)
    painter = Painter()
    painter.overlay = timers.wrap("render", painter.overlay)
    faces = pipe.body_model.faces.cpu().numpy()
    try:
        out = {}
        for how in ("step", "overlap", "defer"):
            session = VideoSession(pipe, 10.0, detect_every)
            frame_ms, stage_ms, counts, cold, seen, longest, waited = [], [], [], 0, set(), 0.0, []
            steps = (((im, *session.step(im)) for im in frames) if how == "step" else
                     session.run(paced(frames, CAMERA_FPS) if how == "defer" else frames, defer_cold=how == "defer"))  # fmt: skip
            timers.total.clear()
            start = time.perf_counter()
            for i, (image, frame, smoothed) in enumerate(steps):
                painter.overlay(image, frame, list(smoothed.items()), faces)
                elapsed = 1000 * (time.perf_counter() - start)
                longest = max(longest, elapsed)
                stages = {k: 1000 * v for k, v in timers.total.items()}
                timers.total.clear()
                start = time.perf_counter()
                fitted = {p.track_id for p in frame.people if p.mesh is not None}
                new = fitted - seen
                seen |= fitted
                if how == "defer":
                    waited += [i] * len(new)  # frames until the first people got their meshes
                    continue
                if new:  # a new track was fitted cold in this frame: not the steady state
                    cold += 1
                    continue
                frame_ms.append(elapsed)
                stage_ms.append(stages)
                counts.append(len(fitted))
            if how == "defer":  # only the longest frame and the first mesh are measured
                out[how] = {"longest": longest, "first_mesh": waited[0] if waited else None}
                continue
            per = {k: float(np.mean([s.get(k, 0.0) for s in stage_ms])) for k in ("detect", "keypoints", "fit", "render")}
            per["other"] = float(np.mean(frame_ms)) - sum(per.values())
            out[how] = {"ms": per, "fps": 1000 / float(np.mean(frame_ms)), "people": float(np.mean(counts)),
                        "cold": cold, "jitter": session.jitter_mm(), "longest": longest}  # fmt: skip
    finally:
        hmr.fitting.SequenceFitter.step = step
    # stage times from the sequential pass (in the overlapped one the 2D stage runs beside the fit)
    return {**out["step"], "fps_overlap": out["overlap"]["fps"], "same": out["step"]["jitter"] == out["overlap"]["jitter"],
            "longest_overlap": out["overlap"]["longest"], "longest_defer": out["defer"]["longest"],
            "first_mesh_defer": out["defer"]["first_mesh"]}  # fmt: skip


def main() -> None:
    import os

    frames = frames_640x480()
    rows = []
    for mode, every in (("video", 1), ("live", 5)):
        for people in (1, 3):
            r = run(frames, people, every)
            ms = r["ms"]
            rows.append([mode, every, people, f"{r['people']:.1f}", r["cold"]] +
                        [f"{ms.get(k, 0.0):.0f}" for k in ("detect", "keypoints", "fit", "render", "other")] +
                        [f"{r['fps']:.2f}", f"{r['fps_overlap']:.2f}", f"{r['fps_overlap'] / r['fps']:.2f}x",
                         f"{r['jitter']['raw']} / {r['jitter']['smoothed']}",
                         f"{r['longest_overlap']:.0f} / {r['longest_defer']:.0f}",
                         "-" if r["first_mesh_defer"] is None else r["first_mesh_defer"]])  # fmt: skip
            if not r["same"]:
                raise SystemExit("the overlapped run's results differ from the sequential one's")
            print(rows[-1], flush=True)
    md = (
        "## Demo pipeline (`benchmarks/bench_demo.py`)\n\n"
        f"`hmr demo` on 640x480 video (vtest.avi frames {FIRST}-{FIRST + COUNT - 1} resized; the detector's "
        "output cut to the 1 or 3 largest people), default pipeline (BlazePose keypoints + fitting of the "
        "default body model, warm-started per track with the fitting's `warm_stages`; `live` = `--camera`: "
        f"detection every 5th frame), CPU: {machine()}. Mean ms per frame over the frames where no new "
        "track was fitted cold (`cold frames`: how many frames had one, excluded; with BlazePose's 3D landmarks it "
        "runs Adam and takes 1-2 s per person, see the fitting section); `other` = tracking, smoothing (body-model forward), bookkeeping; "
        "fps = 1000 / mean frame time, stepping frame by frame (`VideoSession.step`, the stage times are from this "
        "pass) and with the next frame's detection and landmarks in a second thread (`VideoSession.run`, as "
        "`hmr demo` runs for video files; same results, checked). Live (`hmr demo --camera`) also runs new "
        "tracks' cold fits in a third thread (`run(defer_cold=True)`): `longest frame` is the longest time between "
        "two frames over the whole clip, cold fits included, without and with that (the deferred pass reads the frames "
        f"no faster than a {CAMERA_FPS:.0f} fps camera); `first mesh at frame`: the "
        "frame (from 0) in which the first person got a mesh when deferred; "
        "`render` is the overlay (MSAA 4x). Jitter: mean 3D joint acceleration raw / One-Euro smoothed, "
        f"mm/frame². 1-minute load average at the end: {os.getloadavg()[0]:.1f}"
        + (
            " (other jobs shared the CPU; re-run on an idle machine for clean numbers)"
            if os.getloadavg()[0] > 2.5
            else ""
        )
        + ".\n\n"
        + table(
            [
                "mode",
                "detect every",
                "people",
                "with mesh",
                "cold frames",
                "detect",
                "keypoints",
                "fit",
                "render",
                "other",
                "fps",
                "fps, 2D stage overlapped",
                "speed-up",
                "jitter raw / smoothed",
                "longest frame ms, overlapped / cold fits deferred",
                "first mesh at frame (deferred)",
            ],
            rows,
        )  # fmt: skip
    )
    write_section("demo", md)


if __name__ == "__main__":
    main()
