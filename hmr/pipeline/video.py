"""A video through the pipeline: tracking, warm-started fitting, One-Euro smoothing, per-track records."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from hmr.detection import Detections
from hmr.geometry import matrix_to_axis_angle
from hmr.geometry.motion import acceleration
from hmr.pipeline.image import FrameResult, Pipeline
from hmr.pipeline.records import frame_record
from hmr.tracking import OneEuroFilter, Tracker, project_to_rotation


def box_from_landmarks(kp, margin: float = 0.1) -> np.ndarray:
    """Box around a person's landmarks that are likely in the image, grown by ``margin`` of its size."""
    pts = kp.keypoints_2d[kp.presence > 0.5] if (kp.presence > 0.5).sum() >= 4 else kp.keypoints_2d
    lo, hi = pts.min(0), pts.max(0)
    pad = (hi - lo) * margin
    return np.concatenate([lo - pad, hi + pad]).astype(np.float32)


class VideoSession:
    """State of one video: tracker, per-track last mesh / landmarks / filter, and the per-frame records.

    Detection runs every ``detect_every`` frames (and whenever nobody is tracked); in between, each track's
    box comes from its previous landmarks, as BlazePose tracks. Each track keeps one shape, the mean of its
    frames' fitted shapes so far. Tracking and the One-Euro smoothing of the
    body parameters (rotation-matrix entries, translation in metres) follow the pipeline's config
    (``tracking``, ``smoothing``; on tests/data/vtest_clip.mp4 at 10 fps, beta 0.3 lags 6 px behind walking
    people, beta 1.0 4 px (raw fits: 2 px) and still halves the joint acceleration (271 -> 132 mm/frame^2),
    beta 2.0 3 px, 152). The detector never tiles in video.
    """

    def __init__(self, pipeline: Pipeline, fps: float, detect_every: int = 1):
        self.pipeline = pipeline
        self.dt = 1.0 / fps if fps > 0 else 1.0 / 30
        self.fps = fps
        self.detect_every = detect_every
        t = pipeline.config.tracking
        self.tracker = Tracker(t.min_iou, t.max_joint_dist, max_age=t.max_age, max_shift=t.max_shift)
        self.smoothing = dataclasses.asdict(pipeline.config.smoothing)
        self._mesh: dict[int, object] = {}
        self._kp: dict[int, object] = {}
        self._filters: dict[int, OneEuroFilter] = {}
        self._shapes: dict[int, tuple[np.ndarray, int]] = {}  # track id -> (sum of raw betas, frames)
        self._cold: ThreadPoolExecutor | None = None  # runs new tracks' cold fits (run(defer_cold=True))
        self._pending: dict[int, tuple[Future, int]] = {}  # track id -> (its cold fit, its index in that fit)
        self.rows: list[dict] = []
        self.frames = 0  # frames fitted
        self._observed = 0  # frames through the 2D stage and the tracker (one ahead while :meth:`run` reads)
        self.last: FrameResult | None = None

    def step(self, image: np.ndarray) -> tuple[FrameResult, dict[int, np.ndarray]]:
        """Process one RGB frame; returns the frame's result (people carry track ids) and the smoothed
        vertices (camera frame, with translation) per track id."""
        return self._fit(image, self._observe(image))

    def run(self, frames: Iterable[np.ndarray], defer_cold: bool = False
            ) -> Iterator[tuple[np.ndarray, FrameResult, dict[int, np.ndarray]]]:  # fmt: skip
        """:meth:`step` over ``frames``, yielding (image, result, smoothed vertices): the next frame is read,
        detected, given landmarks and tracked in a second thread while this one fits (and the caller renders)
        the current one. The results are those of :meth:`step` frame by frame: the 2D stage and the tracker
        never depend on a fit.

        ``defer_cold`` (a live camera): a new track's cold fit (about a second) runs in a third thread instead of
        holding up the frames; until it ends the track has landmarks but no mesh, and its first warm fit starts
        from the cold fit's result (:meth:`Pipeline.fit_cold`, the one :meth:`step` would have made in the
        frame the track appeared) moved onto the current landmarks. Results then depend on timing. A pipeline
        with a network starts everyone from its output and defers nothing."""
        frames = iter(frames)

        def ahead():
            image = next(frames, None)
            return None if image is None else (image, self._observe(image))

        with (ThreadPoolExecutor(1, thread_name_prefix="hmr-video-observe") as pool,
              ThreadPoolExecutor(1, thread_name_prefix="hmr-video-cold") as cold):  # fmt: skip
            # with a network every person starts from its output, so no fit is cold
            self._cold = cold if defer_cold and self.pipeline.network is None else None
            try:
                job = pool.submit(ahead)
                while (item := job.result()) is not None:
                    job = pool.submit(ahead)
                    image, observed = item
                    yield (image, *self._fit(image, observed))
            finally:
                self._cold = None
                self._pending.clear()
                cold.shutdown(wait=False, cancel_futures=True)

    def _observe(self, image: np.ndarray) -> tuple[list, list[int], set[int]]:
        """The 2D stage and the tracker for the next frame: its people, their track ids and the tracks alive
        after it."""
        p = self.pipeline
        seen = [t for t in self.tracker.tracks if t.age == 0 and t.track_id in self._kp]
        if self._observed % self.detect_every == 0 or not seen:
            obs = p.observe(image, tiles=False)
        else:
            boxes = np.stack([box_from_landmarks(self._kp[t.track_id]) for t in seen])
            obs = p.observe(image, Detections(boxes, np.ones(len(seen), np.float32), "track"))
        ids = self.tracker.update(
            np.array([o.box for o in obs], np.float32).reshape(-1, 4),
            [o.keypoints.keypoints_3d if o.keypoints is not None else None for o in obs],
        )
        for o, tid in zip(obs, ids, strict=True):
            if o.keypoints is not None:
                self._kp[tid] = o.keypoints.without_mask()
        live = {t.track_id for t in self.tracker.tracks}
        for tid in [k for k in self._kp if k not in live]:
            del self._kp[tid]
        self._observed += 1
        return obs, ids, live

    def _fit(self, image: np.ndarray, observed: tuple[list, list[int], set[int]]) -> tuple[FrameResult, dict[int, np.ndarray]]:
        """Fit, smooth and record one frame :meth:`_observe` saw (frames in order)."""
        obs, ids, live = observed
        deferred = self._defer_cold(image, obs, ids, live) if self._cold is not None else set()
        fitted = [dataclasses.replace(o, keypoints=None) if i in deferred else o for i, o in enumerate(obs)]
        frame = self.pipeline(image, previous=[self._mesh.get(t) for t in ids], observations=fitted)
        smoothed = {}
        for i, (person, tid) in enumerate(zip(frame.people, ids, strict=True)):
            person.track_id = tid
            if i in deferred:
                person.keypoints = obs[i].keypoints.without_mask()
            row = {"frame": self.frames, "track_id": tid, "box": person.box, "score": person.score,
                   "keypoints_2d": person.keypoints, "status": person.status, "raw": None, "smoothed": None}  # fmt: skip
            if person.mesh is not None:
                self._mesh[tid] = person.mesh
                m = person.mesh
                raw = self._params(torch.cat([m.global_orient, m.body_pose], 1)[0], m.betas[0], m.cam_t_full[0], False)
                row["raw"] = raw
                row["smoothed"] = self._smooth(tid, raw)
                smoothed[tid] = row["smoothed"]["vertices"]
            self.rows.append(row)
        for store in (self._mesh, self._filters, self._shapes, self._pending):  # tracks ended by this frame
            for tid in [k for k in store if k not in live]:
                del store[tid]
        self.frames += 1
        self.last = frame
        return frame, smoothed

    def _defer_cold(self, image: np.ndarray, obs: list, ids: list[int], live: set[int]) -> set[int]:
        """The people of this frame whose cold fit is running (in ``self._cold``): new tracks start theirs now,
        together; tracks whose cold fit has ended get its mesh as their start."""
        for tid, (job, j) in list(self._pending.items()):
            if job.done():
                del self._pending[tid]
                mesh = job.result()[j]
                if mesh is not None and tid in live:
                    self._mesh[tid] = mesh
        new = [i for i, (o, tid) in enumerate(zip(obs, ids, strict=True))
               if o.keypoints is not None and tid not in self._mesh]  # fmt: skip
        start = [i for i in new if ids[i] not in self._pending]
        if start:
            job = self._cold.submit(self.pipeline.fit_cold, image, [obs[i] for i in start])
            self._pending.update({ids[i]: (job, j) for j, i in enumerate(start)})
        return set(new)

    def _params(self, rot: torch.Tensor, betas: torch.Tensor, cam_t: torch.Tensor, vertices: bool) -> dict:
        """Rotations (J, 3, 3), betas (S,), translation (3,) -> parameters, camera-frame joints and (when
        ``vertices``) camera-frame vertices."""
        bm = self.pipeline.body_model
        rot, betas, t = rot.float().cpu(), betas.float().cpu(), cam_t.float().cpu()
        out = {
            "rotmats": rot.numpy(),
            "axis_angle": matrix_to_axis_angle(rot).numpy(),
            "betas": betas.numpy(),
            "cam_t": t.numpy(),
        }
        with torch.no_grad():
            out["joints"] = (bm.posed_joints(rot[None], betas[None])[0].cpu() + t).numpy()
            if vertices:
                dev = bm.v_template.device
                v = bm(global_orient=rot[None, :1].to(dev), body_pose=rot[None, 1:].to(dev), betas=betas[None].to(dev),
                       keypoint_sets=())
                out["vertices"] = (v.vertices[0].cpu() + t).numpy()
        return out

    def _smooth(self, tid: int, raw: dict) -> dict:
        """One-Euro filtered pose and translation; the shape is the mean of the track's raw shapes so far (one
        body per person: frame-by-frame shapes only follow the keypoints' noise)."""
        f = self._filters.setdefault(tid, OneEuroFilter(**self.smoothing))
        nr = raw["rotmats"].size
        vec = f(np.concatenate([raw["rotmats"].ravel(), raw["cam_t"]]), self.dt)
        total, n = self._shapes.get(tid, (np.zeros_like(raw["betas"], np.float64), 0))
        self._shapes[tid] = (total + raw["betas"], n + 1)
        betas = (self._shapes[tid][0] / (n + 1)).astype(np.float32)
        rot = project_to_rotation(vec[:nr].reshape(raw["rotmats"].shape))
        return self._params(torch.from_numpy(rot), torch.from_numpy(betas), torch.from_numpy(vec[nr:]), vertices=True)

    def jitter_mm(self) -> dict:
        """Mean 3D joint acceleration (mm/frame²) of raw and smoothed joints, over runs of consecutive frames
        of every track (frames weighted equally)."""
        out = {}
        for kind in ("raw", "smoothed"):
            accs = []
            for tid in sorted({r["track_id"] for r in self.rows}):
                rows = [r for r in self.rows if r["track_id"] == tid and r[kind] is not None]
                run: list[np.ndarray] = []
                for k, r in enumerate(rows):
                    if k and r["frame"] != rows[k - 1]["frame"] + 1:
                        accs += _accelerations(run)
                        run = []
                    run.append(r[kind]["joints"])
                accs += _accelerations(run)
            out[kind] = round(1000 * float(np.mean(accs)), 3) if accs else None
        return out

    def records(self, source: str, faces: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON record (people = tracks) and npz arrays (one row per frame and track) of the whole video."""
        frame = self.last
        rec = frame_record(source, "video", frame, self.pipeline.body_model, [], {})
        rec.update({"fps": self.fps, "num_frames": self.frames, "detect_every": self.detect_every,
                    "smoothing": {"filter": "one-euro", **self.smoothing}, "jitter_mm_per_frame2": self.jitter_mm()})  # fmt: skip
        tracks: dict[int, list[dict]] = {}
        for r in self.rows:
            tracks.setdefault(r["track_id"], []).append(r)
        for tid, rows in sorted(tracks.items()):
            rec["people"].append({
                "track_id": tid,
                "first_frame": rows[0]["frame"],
                "last_frame": rows[-1]["frame"],
                "frames": [_frame_entry(r) for r in rows],
            })  # fmt: skip
        return rec, _arrays(self.rows, faces, frame)


def _accelerations(run: list[np.ndarray]) -> list[float]:
    return acceleration(torch.from_numpy(np.stack(run))).tolist() if len(run) >= 3 else []


def _frame_entry(r: dict) -> dict:
    kp = r["keypoints_2d"]

    def params(p):
        if p is None:
            return None
        return {
            "global_orient_axis_angle": np.round(p["axis_angle"][0], 5).tolist(),
            "body_pose_axis_angle": np.round(p["axis_angle"][1:], 5).tolist(),
            "betas": np.round(p["betas"], 5).tolist(),
            "cam_t": np.round(p["cam_t"], 5).tolist(),
        }

    return {
        "frame": r["frame"],
        "status": r["status"],
        "box": np.round(r["box"], 2).tolist(),
        "score": round(float(r["score"]), 4),
        "keypoints_2d": None if kp is None else np.round(np.c_[kp.keypoints_2d, kp.confidence], 2).tolist(),
        "raw": params(r["raw"]),
        "smoothed": params(r["smoothed"]),
    }


def _arrays(rows: list[dict], faces: np.ndarray, frame: FrameResult) -> dict[str, np.ndarray]:
    n = len(rows)
    out = {
        "frame": np.array([r["frame"] for r in rows], np.int64),
        "track_id": np.array([r["track_id"] for r in rows], np.int64),
        "boxes": np.array([r["box"] for r in rows], np.float32).reshape(n, 4),
        "scores": np.array([r["score"] for r in rows], np.float32),
        "has_mesh": np.array([r["raw"] is not None for r in rows]),
        "keypoints_2d": np.stack(
            [
                np.c_[r["keypoints_2d"].keypoints_2d, r["keypoints_2d"].confidence]
                if r["keypoints_2d"] is not None
                else np.full((33, 3), np.nan, np.float32)
                for r in rows
            ]
        ).astype(np.float32)
        if n
        else np.zeros((0, 33, 3), np.float32),  # fmt: skip
        "focal_length": frame.camera.focal_length[0].numpy(),
        "principal_point": frame.camera.principal_point[0].numpy(),
        "image_size": np.array(frame.image_size, np.int32),
        "body_model": np.array(frame.body_model),
        "faces": np.asarray(faces, np.int32),
    }
    template = next((r["raw"] for r in rows if r["raw"] is not None), None)
    if template is not None:
        for kind in ("raw", "smoothed"):
            for key in ("rotmats", "axis_angle", "betas", "cam_t", "joints"):
                shape = template[key].shape
                out[f"{kind}_{key}"] = np.stack(
                    [r[kind][key] if r[kind] is not None else np.full(shape, np.nan) for r in rows]
                ).astype(np.float32)
    return out
