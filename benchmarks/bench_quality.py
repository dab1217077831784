"""Out-of-the-box mesh quality of the free pipeline (issue 19): shapes at their bound, silhouettes against
BlazePose's person segmentation, the legs of people cut at the waist, the shapes of synthetic people with
known bodies, and overlay / side-view pictures. Writes JSON, pictures and a section of docs/benchmarks.md.

The free pipeline is ``hmr.pipeline.image.Pipeline()`` with the default ``PipelineConfig()`` (SSDLite boxes ->
BlazePose landmarks per box -> the bundled ``hmr-anny-v1`` fitted to the 2D + 3D landmarks).

Measures:

1. Real people: examples/*.jpg|png, the 8 committed frames tests/data/vtest/*.jpg and 13 more frames of
   OpenCV's vtest.avi (every 60th from frame 30, none of them a committed one).
   a. share of the fitted shape components at the bound (``|beta| >= FitConfig().max_abs_beta - 1e-3``),
      overall and per component, with each component's mean signed value;
   b. silhouette IoU for people at least 100 px tall (detector box): the person's mesh alone (other people's
      meshes are not drawn, so nothing occludes it) rendered flat with the full-image camera against the
      person segmentation of BlazePose run on the same box, thresholded at 0.5, both inside the landmark
      region (the ROI square, clipped to the image). The reference segmentation always comes from this
      checkout's ``hmr/landmarks/blazepose.py`` loaded by file path, so a run against another checkout (one
      without ``PoseEstimator(segmentation=True)``) is measured against the same masks;
   c. the astronaut (examples/astronaut.jpg, cut at the chest): geodesic angle between the fitted local
      rotation of each hip and knee and the pose prior's mean pose (``PosePrior(...).mean_pose``, "the neutral
      pose" here). Goal: within 30 degrees.
2. Synthetic people with known shapes (``hmr.data.synth.SynthGenerator``, one person per image, shapes from
   ``hmr.data.people.sample_betas``): the whole pipeline with the true camera; the fitted person is the one
   whose detector box overlaps the true box most (IoU >= 0.3). Shape error: mean vertex distance (mm) of the
   fitted and the true body in the zero pose after aligning their pelvis joints, and the same for the mean
   shape (betas = 0) as a baseline. People the image border cuts are reported separately, and 8 more renders
   of upright people are cut at the waist (the image ends at the ``spine1`` joint's height): their hip and
   knee angles to the neutral pose.
3. Pictures: every example and 3 vtest frames, meshes over the photo and the side view side by side, saved
   as docs/images/quality_<stem>_<tag>.png.

    python -m benchmarks.bench_quality [--tag TAG] [--quick] [--out-json PATH] [--no-doc]

Against another checkout (its ``hmr`` first on PYTHONPATH; this file run by path, so that the other
checkout's ``benchmarks`` package does not shadow it):

    cd /tmp && PYTHONPATH=/tmp/before OMP_NUM_THREADS=1 .venv/bin/python /work/main/benchmarks/bench_quality.py --tag before
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _load_by_path(name: str, path: Path):
    """Import one file as module ``name`` (registered in sys.modules, as dataclasses need)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


try:  # hmr from PYTHONPATH (another checkout) or the installed one; this checkout only as the last resort
    import hmr  # noqa: F401
except ImportError:
    sys.path.append(str(ROOT))
# benchmarks/report.py by path: with PYTHONPATH=/other/checkout, ``benchmarks`` would be the other one's
_report = _load_by_path("_bench_quality_report", ROOT / "benchmarks" / "report.py")

EXAMPLES = ("examples/astronaut.jpg", "examples/basketball1.png", "examples/basketball2.png")
VTEST_DIR = ROOT / "tests" / "data" / "vtest"
VTEST_AVI = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
AVI_FRAMES = tuple(range(30, 795, 60))  # 13 frames of the 795; the committed ones are the multiples of 100
PICTURE_VTEST = ("frame_000", "frame_300", "frame_600")
MIN_HEIGHT_PX = 100
MASK_THRESHOLD = 0.5
LEG_JOINTS = ("left_hip", "right_hip", "left_knee", "right_knee")
LEG_GOAL_DEG = 30.0
SYNTH_SEED = 19  # the number
SYNTH_IMAGES = 36
CUT_RENDERS = 8
MATCH_IOU = 0.3
PICTURE_MAX_WIDTH = 1024
PICTURE_MAX_BYTES = 300 * 1024
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "images"


# --------------------------------------------------------------------------------- helpers (pure numpy)
def roi_window(roi, width: int, height: int) -> tuple[int, int, int, int]:
    """The landmark region (cx, cy, side, rotation 0) as pixel bounds (x0, y0, x1, y1) clipped to the image."""
    cx, cy, side = (float(v) for v in np.asarray(roi)[:3])
    x0, y0 = max(0, int(math.floor(cx - side / 2))), max(0, int(math.floor(cy - side / 2)))
    x1, y1 = min(int(width), int(math.ceil(cx + side / 2))), min(int(height), int(math.ceil(cy + side / 2)))
    return x0, y0, max(x0, x1), max(y0, y1)


def mask_iou(a: np.ndarray, b: np.ndarray, window: tuple[int, int, int, int] | None = None) -> float:
    """Intersection over union of two boolean masks (inside ``window`` (x0, y0, x1, y1) when given); NaN when
    both are empty there."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    if window is not None:
        x0, y0, x1, y1 = window
        a, b = a[y0:y1, x0:x1], b[y0:y1, x0:x1]
    union = int(np.logical_or(a, b).sum())
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def geodesic_deg(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Angle (degrees) of the rotation taking ``r1`` to ``r2``, both (..., 3, 3): arccos((tr(r1^T r2) - 1) / 2)."""
    r1, r2 = np.asarray(r1, np.float64), np.asarray(r2, np.float64)
    trace = np.einsum("...ij,...ij->...", r1, r2)  # tr(r1^T r2)
    return np.degrees(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


def box_iou(a, b) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def bound_shares(betas: np.ndarray, bound: float, tol: float = 1e-3) -> dict:
    """Share of all components at the bound (|beta| >= bound - tol), per component that share and the mean
    signed value, and the share of people with at least one component there."""
    betas = np.asarray(betas, np.float64).reshape(-1, np.asarray(betas).shape[-1] if np.size(betas) else 10)
    at = np.abs(betas) >= bound - tol
    n = len(betas)
    return {
        "people": n,
        "share": float(at.mean()) if n else float("nan"),
        "people_with_any": float(at.any(1).mean()) if n else float("nan"),
        "per_component_share": at.mean(0).tolist() if n else [],
        "per_component_mean": betas.mean(0).tolist() if n else [],
        "per_component_at_plus": (betas >= bound - tol).mean(0).tolist() if n else [],
        "per_component_at_minus": (betas <= -(bound - tol)).mean(0).tolist() if n else [],
    }


def pelvis_aligned_error_mm(verts_a, joints_a, verts_b, joints_b) -> float:
    """Mean vertex distance (mm) of two (V, 3) meshes after moving each one's joint 0 (pelvis) to the origin."""
    a = np.asarray(verts_a, np.float64) - np.asarray(joints_a, np.float64)[0]
    b = np.asarray(verts_b, np.float64) - np.asarray(joints_b, np.float64)[0]
    return float(np.linalg.norm(a - b, axis=-1).mean() * 1000)


def _betas10(betas) -> list[float]:
    """The first 10 shape components (zeros past a model's own), rounded: what the shape measures compare."""
    b = [round(float(v), 4) for v in np.asarray(betas, np.float64).reshape(-1)[:10]]
    return b + [0.0] * (10 - len(b))


def _f(x, nd: int = 4):
    """JSON-friendly float (None for NaN)."""
    x = float(x)
    return None if math.isnan(x) else round(x, nd)


def _stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], np.float64)
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "mean": _f(v.mean()), "median": _f(np.median(v)), "min": _f(v.min()), "max": _f(v.max())}


# ------------------------------------------------------------------------------------------ the bench
def reference_estimator():
    """BlazePose with person segmentation from this checkout's landmarks module, whatever ``hmr`` is imported."""
    mod = _load_by_path("_bench_quality_blazepose", ROOT / "hmr" / "landmarks" / "blazepose.py")
    return mod.PoseEstimator(segmentation=True)


class Bench:
    def __init__(self):
        import torch

        from hmr.fitting import FitConfig, PosePrior
        from hmr.geometry import axis_angle_to_matrix
        from hmr.pipeline.image import Pipeline

        self.torch = torch
        self.pipe = Pipeline()
        self.model = self.pipe.body_model
        self.faces = self.model.faces.cpu().numpy()
        self.ref = reference_estimator()
        self.bound = float(FitConfig().max_abs_beta)
        names = self.model.joint_names
        self.leg_index = [names.index(j) - 1 for j in LEG_JOINTS]  # body_pose rows (the root has none)
        self.spine1 = names.index("spine1")
        mean = PosePrior(names).mean_pose.double()
        self.neutral_aa = mean[self.leg_index].numpy()
        self.neutral = axis_angle_to_matrix(mean[self.leg_index]).numpy()  # (4, 3, 3)
        self._renderers: dict = {}
        self.renderer_name = ""

    def renderer(self, w: int, h: int):
        from hmr.render import Renderer

        if (w, h) not in self._renderers:
            self._renderers[(w, h)] = Renderer(w, h)
            self.renderer_name = self._renderers[(w, h)].device_name
        return self._renderers[(w, h)]

    # ---------------------------------------------------------------------------------- per person
    def leg_angles(self, mesh) -> dict:
        """Geodesic angle (deg) of each fitted hip/knee local rotation to the neutral pose's, and to rest."""
        rot = mesh.body_pose[0, self.leg_index].double().numpy()
        to_neutral = geodesic_deg(rot, self.neutral)
        to_rest = geodesic_deg(rot, np.eye(3))
        return {
            j: {"neutral": _f(a, 2), "rest": _f(b, 2)} for j, a, b in zip(LEG_JOINTS, to_neutral, to_rest, strict=True)
        }

    def silhouette(self, image: np.ndarray, camera, person) -> dict:
        """IoU inside the landmark region of the person's mesh silhouette (drawn alone) and BlazePose's mask."""
        h, w = image.shape[:2]
        kp = self.ref(image, np.asarray(person.box, np.float32)[None])[0]
        if kp is None or kp.mask is None:
            return {"iou": None, "why": "BlazePose saw no body in the box"}
        seg = kp.mask >= MASK_THRESHOLD
        verts = (person.mesh.vertices[0] + person.mesh.cam_t_full[0]).detach().cpu().numpy()
        out = self.renderer(w, h).render(verts, self.faces, camera, colors=(1.0, 1.0, 1.0), shading=False)
        sil = out.mask > 0
        win = roi_window(kp.roi, w, h)
        x0, y0, x1, y1 = win
        mesh_px, seg_px = int(sil[y0:y1, x0:x1].sum()), int(seg[y0:y1, x0:x1].sum())
        return {
            "iou": _f(mask_iou(sil, seg, win)),
            "roi": [int(v) for v in win],
            "mesh_px": mesh_px,
            "mask_px": seg_px,
            "mesh_over_mask": _f(mesh_px / seg_px, 3) if seg_px else None,
            "mesh_outside_roi_px": int(sil.sum()) - mesh_px,
        }

    def neutral_body(self, betas):
        """(vertices (V, 3), joints (J, 3)) of the zero pose with these betas (None: the mean shape)."""
        m = self.model
        b = self.torch.zeros(1, m.num_betas, dtype=m.v_template.dtype)
        if betas is not None:
            betas = self.torch.as_tensor(np.asarray(betas, np.float64)).reshape(1, -1)[:, : m.num_betas]
            b[:, : betas.shape[1]] = betas.to(b.dtype)
        with self.torch.no_grad():
            out = m(betas=b, keypoint_sets=())
        return out.vertices[0].double().numpy(), out.joints[0].double().numpy()

    # ------------------------------------------------------------------------------------- images
    def real_image(self, name: str, image: np.ndarray, picture: Path | None) -> list[dict]:
        res = self.pipe(image)
        rows = []
        for i, p in enumerate(res.people):
            box = [float(v) for v in p.box]
            row = {"image": name, "person": i, "box": [round(v, 1) for v in box], "height_px": round(box[3] - box[1], 1),
                   "mesh": p.mesh is not None}  # fmt: skip
            if p.mesh is not None:
                row["betas"] = _betas10(p.mesh.betas[0])
                row["cam_t"] = [round(float(v), 3) for v in p.mesh.cam_t_full[0]]
                row["legs"] = self.leg_angles(p.mesh)
                if box[3] - box[1] >= MIN_HEIGHT_PX:
                    row["silhouette"] = self.silhouette(image, res.camera, p)
            rows.append(row)
        if picture is not None:
            self.picture(image, res, picture)
        return rows

    def picture(self, image: np.ndarray, res, path: Path) -> None:
        """Meshes over the photo | side view, one PNG under ``PICTURE_MAX_BYTES``."""
        import cv2

        from hmr.render import DEFAULT_PALETTE

        h, w = image.shape[:2]
        people = [(i, p) for i, p in enumerate(res.people) if p.mesh is not None]
        verts = [(p.mesh.vertices[0] + p.mesh.cam_t_full[0]).detach().cpu().numpy() for _, p in people]
        colors = [DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)] for i, _ in people]
        r = self.renderer(w, h)
        over = r.overlay(image, verts, self.faces, res.camera, colors=colors) if verts else image.copy()
        side = r.side_view(verts, self.faces, res.camera, colors=colors) if verts else np.full_like(image, 255)
        side = _zoom_to_content(side)
        both = np.concatenate([over, np.full((h, 4, 3), 255, np.uint8), side], 1)
        scale = min(1.0, PICTURE_MAX_WIDTH / both.shape[1])
        while True:
            size = (max(1, round(both.shape[1] * scale)), max(1, round(both.shape[0] * scale)))
            small = cv2.resize(both, size, interpolation=cv2.INTER_AREA) if scale < 1 else both
            ok, buf = cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
            if not ok:
                raise RuntimeError(f"PNG encoding failed for {path}")
            if len(buf) <= PICTURE_MAX_BYTES or scale < 0.2:
                break
            scale *= 0.85
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, path)

    # ---------------------------------------------------------------------------------- synthetic
    def _truth(self, person: dict, w: int, h: int) -> dict:
        """The true body of a generator person: posed vertices/joints in the camera frame, projected box."""
        torch, m = self.torch, self.model
        pose = torch.as_tensor(np.asarray(person["body_pose"], np.float64)).reshape(1, -1)
        betas = torch.as_tensor(np.asarray(person["betas"], np.float64)).reshape(1, -1)[:, : m.num_betas]
        transl = torch.as_tensor(np.asarray(person["transl"], np.float64)).reshape(1, 3)
        dt = m.v_template.dtype
        with torch.no_grad():
            out = m(pose[:, :3].to(dt), pose[:, 3:].to(dt), betas.to(dt), transl.to(dt), keypoint_sets=())
        f = float(person["focal_length"][0])
        cx, cy = (float(v) for v in person["principal_point"])
        v = out.vertices[0].double().numpy()
        uv = v[:, :2] / v[:, 2:] * f + (cx, cy)
        j = out.joints[0].double().numpy()
        juv = j[:, :2] / j[:, 2:] * f + (cx, cy)
        lo, hi = uv.min(0), uv.max(0)
        inside = bool(lo[0] >= 0 and lo[1] >= 0 and hi[0] <= w and hi[1] <= h)
        box = [max(lo[0], 0.0), max(lo[1], 0.0), min(hi[0], w), min(hi[1], h)]
        return {"intrinsics": (f, f, cx, cy), "box": box, "inside": inside, "joints_uv": juv, "uv": uv}

    def _fit_synthetic(self, image: np.ndarray, intrinsics, truth_box, person: dict) -> dict:
        from hmr.detection import Detections
        from hmr.pipeline.image import make_camera

        h, w = image.shape[:2]
        camera = make_camera(w, h, intrinsics=intrinsics)
        res = self.pipe(image, camera=camera)
        cands = [(box_iou(p.box, truth_box), i) for i, p in enumerate(res.people) if p.mesh is not None]
        row = {"detected": len(res.people), "with_mesh": len(cands), "box_source": "detector"}
        best = max(cands, default=(0.0, -1))
        if best[0] < MATCH_IOU:
            # SSDLite misses most of the generator's bald, flat-shaded people: the rest of the pipeline then
            # runs on the true box (the landmarks and the fit are what is measured here)
            res = self.pipe(image, boxes=Detections.from_boxes(np.asarray([truth_box], np.float32)), camera=camera)
            cands = [(box_iou(p.box, truth_box), i) for i, p in enumerate(res.people) if p.mesh is not None]
            best = max(cands, default=(0.0, -1))
            row["box_source"] = "true box"
        if best[0] < MATCH_IOU:
            row["matched"] = False
            return row
        p = res.people[best[1]]
        row.update(matched=True, box_iou=_f(best[0], 3), betas=_betas10(p.mesh.betas[0]))
        tv, tj = self.neutral_body(person["betas"])
        fv, fj = self.neutral_body(p.mesh.betas[0].numpy())
        mv, mj = self.neutral_body(None)
        row["shape_error_mm"] = _f(pelvis_aligned_error_mm(fv, fj, tv, tj), 2)
        row["mean_shape_error_mm"] = _f(pelvis_aligned_error_mm(mv, mj, tv, tj), 2)
        row["legs"] = self.leg_angles(p.mesh)
        return row

    def synthetic(self, gen, index: int) -> dict:
        from hmr.data.synth import image_rng

        s = gen.image(image_rng(SYNTH_SEED, index))
        h, w = s.image.shape[:2]
        row = {"index": index, "size": [w, h]}
        if not s.people:
            return {**row, "skipped": "no visible person"}
        person = s.people[0]
        t = self._truth(person, w, h)
        row["true_betas"] = [round(float(v), 4) for v in person["betas"]]
        row["cut_by_border"] = not t["inside"]
        return {**row, **self._fit_synthetic(s.image, t["intrinsics"], t["box"], person)}

    def waist_cut(self, gen, index: int) -> dict | None:
        """A render of an upright person fully in view, cut at the waist (the image ends at spine1's height);
        None when the drawn person is not upright and in view."""
        from hmr.data.synth import image_rng

        s = gen.image(image_rng(SYNTH_SEED + 1, index))
        if not s.people:
            return None
        h, w = s.image.shape[:2]
        person = s.people[0]
        t = self._truth(person, w, h)
        if not t["inside"]:
            return None
        names = self.model.joint_names
        y = {n: t["joints_uv"][names.index(n), 1] for n in ("head", "spine1", "left_knee", "right_knee",
                                                             "left_ankle", "right_ankle")}  # fmt: skip
        upright = y["head"] < y["spine1"] < min(y["left_knee"], y["right_knee"]) and max(
            y["left_knee"], y["right_knee"]) < min(y["left_ankle"], y["right_ankle"])  # fmt: skip
        cut = int(round(y["spine1"]))
        if not upright or cut < 0.35 * h or cut - t["box"][1] < 60:  # a visible upper body of some size
            return None
        image = np.ascontiguousarray(s.image[:cut])
        box = [t["box"][0], t["box"][1], t["box"][2], min(t["box"][3], cut)]
        row = {
            "index": index,
            "size": [w, cut],
            "uncut_height": h,
            "true_betas": [round(float(v), 4) for v in person["betas"]],
        }
        return {**row, **self._fit_synthetic(image, t["intrinsics"], box, person)}


def _zoom_to_content(view: np.ndarray, margin: float = 0.08) -> np.ndarray:
    """The side view's meshes (its non-white pixels) enlarged to fill the picture (white around them): far
    apart, small people (vtest) would otherwise be a few pixels each."""
    import cv2

    h, w = view.shape[:2]
    ys, xs = np.nonzero((view < 250).any(-1))
    if not len(xs):
        return view
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    pad = int(margin * max(x1 - x0, y1 - y0))
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    crop = view[y0:y1, x0:x1]
    scale = min(w / crop.shape[1], h / crop.shape[0])
    size = (max(1, int(crop.shape[1] * scale)), max(1, int(crop.shape[0] * scale)))
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.full_like(view, 255)
    oy, ox = (h - size[1]) // 2, (w - size[0]) // 2
    out[oy : oy + size[1], ox : ox + size[0]] = crop
    return out


# --------------------------------------------------------------------------------------- inputs
def real_inputs(quick: bool) -> list[tuple[str, object, str | None]]:
    """(name, loader, picture stem or None) for the real pictures, in a fixed order."""
    from hmr.io.images import read_image

    items = [(p, (lambda p=p: read_image(ROOT / p)), Path(p).stem) for p in EXAMPLES]
    vtest = sorted(VTEST_DIR.glob("*.jpg"))
    items += [(str(f.relative_to(ROOT)), (lambda f=f: read_image(f)), f"vtest_{f.stem}" if f.stem in PICTURE_VTEST else None)
              for f in vtest]  # fmt: skip
    frames = AVI_FRAMES
    if quick:
        items, frames = items[:2] + [i for i in items if i[0].endswith("frame_300.jpg")], AVI_FRAMES[:1]
    if VTEST_AVI.is_file():
        cache: dict[int, np.ndarray] = {}

        def avi_frame(k: int) -> np.ndarray:
            if not cache:
                import cv2

                cap = cv2.VideoCapture(str(VTEST_AVI))
                i = 0
                while i <= max(frames):
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    if i in frames:
                        cache[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    i += 1
                cap.release()
            if k not in cache:
                raise RuntimeError(f"{VTEST_AVI}: frame {k} could not be read")
            return cache[k]

        items += [(f"vtest.avi#{k}", (lambda k=k: avi_frame(k)), None) for k in frames]
    else:
        print(f"warning: {VTEST_AVI} not found; its frames are skipped", file=sys.stderr)
    return items


def describe_inputs(inputs) -> str:
    names = [n for n, _, _ in inputs]
    ex = [n for n in names if n.startswith("examples/")]
    vt = [n for n in names if n.startswith("tests/data/vtest/")]
    avi = [n.split("#")[1] for n in names if n.startswith("vtest.avi#")]
    parts = [f"{len(ex)} examples", f"{len(vt)} committed vtest frames"]
    if avi:
        parts.append(f"vtest.avi frames {', '.join(avi)}")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------ summary
def summarise(real: list[dict], synth: list[dict], cut: list[dict], bound: float) -> dict:
    fitted = [r for r in real if r["mesh"]]
    s = {"real_bound": bound_shares(np.array([r["betas"] for r in fitted]).reshape(-1, 10), bound)}
    sil = [r for r in fitted if "silhouette" in r]
    ious = [(r["silhouette"]["iou"], r) for r in sil if r["silhouette"]["iou"] is not None]
    s["iou"] = {
        **_stats([v for v, _ in ious]),
        "people_tall_enough": len(sil),
        "no_mask": len(sil) - len(ious),
        "mesh_over_mask_median": _f(np.median([r["silhouette"]["mesh_over_mask"] for _, r in ious
                                               if r["silhouette"]["mesh_over_mask"] is not None]), 3) if ious else None,
        "worst": [{"image": r["image"], "box": r["box"], "iou": v} for v, r in sorted(ious, key=lambda x: x[0])[:5]],
        "people": [{"image": r["image"], "box": r["box"], "height_px": r["height_px"], "iou": r["silhouette"]["iou"],
                    "mesh_over_mask": r["silhouette"]["mesh_over_mask"]} for r in sil],
    }  # fmt: skip
    astro = [r for r in fitted if r["image"] == EXAMPLES[0]]
    if astro:
        a = max(astro, key=lambda r: (r["box"][2] - r["box"][0]) * (r["box"][3] - r["box"][1]))
        s["astronaut_legs"] = a["legs"]
        s["astronaut_within_goal"] = all(v["neutral"] <= LEG_GOAL_DEG for v in a["legs"].values())
    matched = [r for r in synth if r.get("matched")]
    for key, rows in (("synthetic_in_view", [r for r in matched if not r["cut_by_border"]]),
                      ("synthetic_border_cut", [r for r in matched if r["cut_by_border"]]),
                      ("synthetic_waist_cut", [r for r in cut if r.get("matched")])):  # fmt: skip
        s[key] = {
            "people": len(rows),
            "shape_error_mm": _stats([r["shape_error_mm"] for r in rows]),
            "mean_shape_error_mm": _stats([r["mean_shape_error_mm"] for r in rows]),
            "fit_better_than_mean_shape": _f(np.mean([r["shape_error_mm"] < r["mean_shape_error_mm"] for r in rows]), 3)
            if rows else None,
            "bound": bound_shares(np.array([r["betas"] for r in rows]).reshape(-1, 10), bound),
        }  # fmt: skip
    s["synthetic_drawn"] = len(synth)
    s["synthetic_unmatched"] = sum(1 for r in synth if "skipped" not in r and not r.get("matched"))
    s["synthetic_skipped"] = sum(1 for r in synth if "skipped" in r)
    s["synthetic_true_mean"] = np.mean([r["true_betas"] for r in matched], 0).tolist() if matched else []
    s["synthetic_true_box"] = sum(1 for r in matched if r["box_source"] == "true box")
    s["synthetic_bound_all"] = bound_shares(np.array([r["betas"] for r in matched]).reshape(-1, 10), bound)
    wc = [r for r in cut if r.get("matched")]
    s["waist_cut_legs"] = {j: _stats([r["legs"][j]["neutral"] for r in wc]) for j in LEG_JOINTS}
    s["waist_cut_within_goal"] = _f(np.mean([all(r["legs"][j]["neutral"] <= LEG_GOAL_DEG for j in LEG_JOINTS)
                                             for r in wc]), 3) if wc else None  # fmt: skip
    s["waist_cut_unmatched"] = sum(1 for r in cut if not r.get("matched"))
    return s


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _pct(x) -> str:
    return "-" if _missing(x) else f"{100 * x:.0f}%"


def _num(x, nd: int = 1) -> str:
    return "-" if _missing(x) else f"{x:.{nd}f}"


def _row(label: str, values, fmt) -> list[str]:
    return [label] + ([fmt(x) for x in values] if len(values) else ["-"] * 10)


def headline(s: dict) -> list[tuple[str, float | None, str]]:
    """(measure, value, formatted) rows: what the section's table and docs/fitting.md's table show."""
    rb = s["real_bound"]
    rows = [
        ("real people: shape components at the bound", rb["share"], _pct(rb["share"])),
        ("real people: people with a component at the bound", rb["people_with_any"], _pct(rb["people_with_any"])),
        ("real people: silhouette IoU, mean", s["iou"].get("mean"), _num(s["iou"].get("mean"), 3)),
        ("real people: silhouette IoU, min", s["iou"].get("min"), _num(s["iou"].get("min"), 3)),
        ("real people: mesh / mask area in the ROI, median", s["iou"].get("mesh_over_mask_median"),
         _num(s["iou"].get("mesh_over_mask_median"), 2)),
    ]  # fmt: skip
    for j, v in s.get("astronaut_legs", {}).items():
        rows.append((f"astronaut: {j.replace('_', ' ')} to neutral (deg)", v["neutral"], _num(v["neutral"])))
    for key, label in (
        ("synthetic_in_view", "synthetic, in view"),
        ("synthetic_waist_cut", "synthetic, cut at the waist"),
    ):
        e, m = s[key]["shape_error_mm"], s[key]["mean_shape_error_mm"]
        rows.append((f"{label}: shape error, mean (mm)", e.get("mean"), _num(e.get("mean"))))
        rows.append((f"{label}: shape error, median (mm)", e.get("median"), _num(e.get("median"))))
        rows.append((f"{label}: mean shape (betas = 0), mean (mm)", m.get("mean"), _num(m.get("mean"))))
        rows.append((f"{label}: components at the bound", s[key]["bound"]["share"], _pct(s[key]["bound"]["share"])))
    for j, v in s["waist_cut_legs"].items():
        rows.append((f"synthetic, cut at the waist: {j.replace('_', ' ')} to neutral, mean (deg)", v.get("mean"),
                     _num(v.get("mean"))))  # fmt: skip
    rows.append((f"synthetic, cut at the waist: people with all 4 within {LEG_GOAL_DEG:g} deg", s["waist_cut_within_goal"],
                 _pct(s["waist_cut_within_goal"])))  # fmt: skip
    return rows


def _ratio(now, before) -> str:
    if now is None or before is None or before == 0:
        return "-"
    return f"{now / before:.2f}x"


def section(result: dict, previous: dict | None) -> str:
    h, s = result["header"], result["summary"]
    tag = h["tag"]
    rb = s["real_bound"]
    baseline = tag == "before"
    title = (
        "## Out-of-the-box quality (`benchmarks/bench_quality.py`)"
        + (", baseline before issue 19" if baseline else f", `{tag}`")
        + (" (`--quick` subset: not comparable with full runs)" if h["quick"] else "")
    )
    rows_now = headline(s)
    if previous is not None and not baseline:
        prev = {k: (v, t) for k, v, t in headline(previous["summary"])}
        table = _report.table(["measure", "before", tag, f"{tag} / before"],
                              [[k, prev.get(k, (None, "-"))[1], t, _ratio(v, prev.get(k, (None,))[0])]
                               for k, v, t in rows_now])  # fmt: skip
    else:
        table = _report.table(["measure", tag], [[k, t] for k, _, t in rows_now])
    comp = _report.table(
        ["component"] + [str(i) for i in range(10)],
        [_row("real: share at bound", rb["per_component_share"], _pct),
         _row("real: at +bound", rb["per_component_at_plus"], _pct),
         _row("real: at -bound", rb["per_component_at_minus"], _pct),
         _row("real: mean value", rb["per_component_mean"], lambda x: f"{x:+.2f}"),
         _row("synthetic: share at bound", s["synthetic_bound_all"]["per_component_share"], _pct),
         _row("synthetic: mean value", s["synthetic_bound_all"]["per_component_mean"], lambda x: f"{x:+.2f}"),
         _row("synthetic: true mean value", s["synthetic_true_mean"], lambda x: f"{x:+.2f}")],
    )  # fmt: skip
    neutral_note = ""
    if previous is not None and not baseline and previous["header"].get("neutral_pose_deg") != h["neutral_pose_deg"]:
        neutral_note = (
            " **The neutral pose differs from the baseline's** (hip/knee axis-angle, deg: before "
            f"{previous['header'].get('neutral_pose_deg')}, now {h['neutral_pose_deg']}), so the angles are measured "
            "against different references."
        )
    worst = "; ".join(f"{w['image']} box {[round(v) for v in w['box']]}: {w['iou']:.3f}" for w in s["iou"]["worst"])
    iv, bc = s["synthetic_in_view"], s["synthetic_border_cut"]
    pics = ", ".join(f"`{p}`" for p in h["pictures"]) or "none written"
    lead = (
        (
            "**Baseline** (the code before issue 19's changes, measured from an untouched copy of it: "
            f"`hmr` imported from `{h['hmr_file']}`). "
        )
        if baseline
        else f"`hmr` imported from `{h['hmr_file']}`. "
    )
    return (
        f"{title}\n\n"
        + lead
        + "The free pipeline (`Pipeline()`, default `PipelineConfig()`: SSDLite -> BlazePose per box -> "
        "`hmr-anny-v1` fitted to the 2D + 3D landmarks). Real people: "
        f"{h['real_images']} pictures ({h['real_description']}), {rb['people']} people with a mesh. At the bound: "
        f"|beta| >= `FitConfig().max_abs_beta` - 1e-3 = {h['max_abs_beta'] - 1e-3:g}. Silhouette IoU: people "
        f">= {MIN_HEIGHT_PX} px tall ({s['iou']['people_tall_enough']}; {s['iou']['no_mask']} without a mask), the "
        "person's mesh rendered alone (others cannot occlude it) with the full-image camera against BlazePose's "
        f"person segmentation on the same box (>= {MASK_THRESHOLD}; always from the benchmark's own checkout's "
        "`hmr/landmarks/blazepose.py`, loaded by path, so identical for every checkout measured), inside the landmark ROI clipped to the image; `mesh / mask`: their areas "
        "there (above 1: the mesh is wider than the person). Neutral pose: the pose prior's mean pose "
        "(`PosePrior.mean_pose`), geodesic angle of the hip/knee local rotations; goal <= 30 deg."
        + neutral_note
        + " Synthetic: "
        f"{s['synthetic_drawn']} renders of `SynthGenerator(people_per_image=1)` (seed {SYNTH_SEED}, procedural "
        "backgrounds, shapes from `sample_betas`), the whole pipeline with the true camera, matched by box IoU >= "
        f"{MATCH_IOU} (SSDLite misses most of these bald, flat-shaded people: then the true box is given to the "
        f"rest of the pipeline, for {s['synthetic_true_box']} of {iv['people'] + bc['people']}); "
        f"{iv['people']} people in view, {bc['people']} cut by the border (reported apart), "
        f"{s['synthetic_unmatched']} missed; {s['synthetic_waist_cut']['people']} more renders of upright people cut "
        f"at the waist (image ends at `spine1`; seed {SYNTH_SEED + 1}). Shape error: mean vertex distance of the "
        "fitted and true bodies in the zero pose, pelvis joints aligned, mm; `mean shape`: the same for betas = 0 "
        f"(the baseline any fit should beat). Machine: {h['machine']}, renderer {h['renderer']}; load average "
        f"{h['load_start']:.1f} at the start, {h['load_end']:.1f} at the end (1 min; other jobs share these "
        f"cores); OMP_NUM_THREADS={h['omp_threads']}. The whole run took {h['seconds'] / 60:.1f} min.\n\n"
        + table
        + "\n\nShape components (share of the real people at the bound, at each sign, mean signed value; "
        "synthetic: the matched generator people):\n\n"
        + comp
        + "\n\n<details><summary>Silhouette IoU per person</summary>\n\n"
        + _report.table(
            ["image", "box (x1, y1, x2, y2)", "height px", "IoU", "mesh / mask"],
            [
                [
                    r["image"],
                    ", ".join(f"{b:.0f}" for b in r["box"]),
                    f"{r['height_px']:.0f}",
                    _num(r["iou"], 3),
                    _num(r["mesh_over_mask"], 2),
                ]
                for r in s["iou"].get("people", [])
            ],
        )
        + "\n\n</details>"
        + f"\n\nLowest IoUs: {worst}. Border-cut synthetic people: shape error "
        f"{_num(bc['shape_error_mm'].get('mean'))} mm mean against {_num(bc['mean_shape_error_mm'].get('mean'))} "
        f"for the mean shape. Fits beating the mean shape: {_pct(iv['fit_better_than_mean_shape'])} of the people in "
        f"view. Pictures (meshes over the photo | side view): {pics}. Per person values: "
        f"`{h['json']}`. Run: `{h.get('command', '')}`."
    )


def fitting_table(s: dict, before: dict | None = None, tag: str = "before") -> str:
    """The short table for docs/fitting.md (with the baseline's column when given)."""
    if before is None:
        return _report.table(["measure (free pipeline, issue 19)", tag], [[k, t] for k, _, t in headline(s)])
    prev = {k: t for k, _, t in headline(before)}
    return _report.table(
        ["measure (free pipeline, issue 19)", "before", tag], [[k, prev.get(k, "-"), t] for k, _, t in headline(s)]
    )


def _command_line() -> str:
    """How this run was started, as one shell line (the environment that decides which ``hmr`` is measured)."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("PYTHONPATH", "OMP_NUM_THREADS") if k in os.environ)
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    how = f"-m {spec.name}" if spec is not None and spec.name else str(Path(sys.argv[0]).resolve())
    return " ".join(x for x in (f"cd {os.getcwd()} &&", env, sys.executable, how, *sys.argv[1:]) if x)


def _shown(path: Path) -> str:
    """A path as the docs show it: relative to this checkout when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tag", default="after", help="names the pictures, the JSON and the docs section (before/after)"
    )
    parser.add_argument("--quick", action="store_true", help="a small subset (smoke test); writes no docs section")
    parser.add_argument("--out-json", type=Path, help="default benchmarks/results/quality_TAG.json "
                        "(--quick: the temporary folder)")  # fmt: skip
    parser.add_argument(
        "--no-doc", action="store_true", help="print the docs section instead of writing it, write no pictures"
    )
    parser.add_argument(
        "--image-dir", type=Path, help="write the pictures here (default docs/images, or none with --no-doc)"
    )
    parser.add_argument(
        "--from-json", type=Path, help="only print (and write) the docs section and table of an earlier run's JSON"
    )
    args = parser.parse_args(argv)
    if args.from_json is not None:
        result = json.loads(args.from_json.read_text())
        publish(result, args.no_doc or result["header"]["quick"])
        return

    from tqdm import tqdm

    import hmr as hmr_pkg

    hmr_file = str(Path(hmr_pkg.__file__).resolve())
    print(f"hmr: {hmr_file}", flush=True)
    out_json = args.out_json or (
        Path(tempfile.gettempdir()) / f"quality_{args.tag}_quick.json" if args.quick else RESULTS / f"quality_{args.tag}.json"
    )  # fmt: skip
    image_dir = args.image_dir or (None if (args.no_doc or args.quick) else IMAGES)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    bench = Bench()
    from hmr.data.synth import SynthGenerator

    gen = SynthGenerator(bench.model, people_per_image=1)
    inputs = real_inputs(args.quick)
    n_synth, n_cut = (3, 2) if args.quick else (SYNTH_IMAGES, CUT_RENDERS)
    bar = tqdm(total=len(inputs) + n_synth + n_cut, unit="image", dynamic_ncols=True)
    real, pictures, times = [], [], {}
    t0 = time.perf_counter()
    for name, load, stem in inputs:
        bar.set_description(Path(name).name)
        picture = image_dir / f"quality_{stem}_{args.tag}.png" if (image_dir is not None and stem) else None
        real += bench.real_image(name, load(), picture)
        if picture is not None:
            pictures.append(_shown(picture))
        bar.update()
    times["real"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    synth = []
    for i in range(n_synth):
        bar.set_description(f"synthetic {i}")
        synth.append(bench.synthetic(gen, i))
        bar.update()
    times["synthetic"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cut, tried = [], 0
    while sum(1 for r in cut if r.get("matched")) < n_cut and tried < 30 * n_cut:  # n_cut fitted people
        bar.set_description(f"waist cut {tried}")
        row = bench.waist_cut(gen, tried)
        tried += 1
        if row is not None:
            cut.append(row)
            if row.get("matched"):
                bar.update()
    times["waist_cut"] = time.perf_counter() - t0
    bar.close()
    summary = summarise(real, synth, cut, bench.bound)
    seconds = time.perf_counter() - start
    header = {
        "tag": args.tag, "quick": args.quick, "hmr_file": hmr_file, "machine": _report.machine(),
        "renderer": bench.renderer_name, "load_start": load_start, "load_end": os.getloadavg()[0],
        "omp_threads": os.environ.get("OMP_NUM_THREADS", "unset"), "seconds": round(seconds, 1),
        "phase_seconds": {k: round(v, 1) for k, v in times.items()}, "max_abs_beta": bench.bound,
        "neutral_pose_deg": {j: np.degrees(bench.neutral_aa[k]).round(2).tolist() for k, j in enumerate(LEG_JOINTS)},
        "real_images": len(inputs), "real_description": describe_inputs(inputs), "waist_cut_renders_tried": tried, "pictures": pictures,
        "json": _shown(out_json),
        "command": _command_line(),
    }  # fmt: skip
    result = {"header": header, "summary": summary, "real": real, "synthetic": synth, "waist_cut": cut}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_json.with_name(out_json.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out_json)
    print(f"\nwrote {out_json} ({seconds / 60:.1f} min)\n")
    publish(result, args.no_doc or args.quick)


def publish(result: dict, print_only: bool) -> None:
    """Print the docs section (against the baseline's JSON for other tags) and docs/fitting.md's table; write
    the section ``quality-TAG`` of docs/benchmarks.md unless ``print_only``."""
    tag = result["header"]["tag"]
    previous = None
    before_json = RESULTS / "quality_before.json"
    if tag != "before" and before_json.is_file():
        previous = json.loads(before_json.read_text())
    md = section(result, previous)
    print(md)
    print("\nFor docs/fitting.md:\n")
    print(fitting_table(result["summary"], previous["summary"] if previous else None, tag))
    if not print_only:
        _report.write_section(f"quality-{tag}", md)
        print(f"\nwrote the section quality-{tag} of {_report.DOC}")


if __name__ == "__main__":
    main()
