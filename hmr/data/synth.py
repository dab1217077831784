"""Synthetic training and evaluation images with exact ground truth (docs/data.md, "Synthetic data").

``hmr data synth --out OUT --num N`` (or :func:`generate`) writes::

    OUT/train/000000.tar ...   4D-Humans webdataset shards: per image <key>.jpg, <key>.data.pyd (pickled list of
                               person dicts), <key>.detection.npz (masks (P, H, W) bool); keys synth_s<shard>_i<image>
    OUT/eval/images/<key>.jpg  the first ``eval_fraction`` of the images (keys synth_i<image>), not in the shards
    OUT/eval/synth_eval.npz    HMR 2.0 evaluation layout, one row per person (loads with allow_pickle=False)
    OUT/synth.json             arguments, generator version, counts

Each image: 1-3 people (poses from :func:`hmr.data.people.sample_pose`, shapes from
:func:`~hmr.data.people.sample_betas`, any yaw), coloured by body part (skin, shirt, trousers, shoes), rendered
with shading over a procedural background or a random crop of a user's image, seen by one random pinhole camera
(focal 0.7-1.8x the larger image side, principal point at the centre, elevation -10..35 deg, roll +-8 deg).
Each person's larger mesh extent (x or y) covers 30-90% of the image height; a quarter of the people are placed
so that the image border may cut them; people do not intersect (their 3D boxes are disjoint) and hide each
other by depth. People whose visible mask has fewer than ``MIN_VISIBLE_PX`` pixels are rendered but not
annotated. 2D keypoint confidence is 1 inside the image (also when another person hides the keypoint), 0
outside it or where the body model lacks the keypoint set.

Image ``i`` is drawn from its own RNG seeded with ``(seed, i)``, so a shard's bytes depend only on the seed
and its images (not on which shards were written before); shards are written to a temporary file and moved
into place when complete, and an existing shard is skipped (resumable).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pickle
import tarfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from hmr.body import SMPL_JOINT_NAMES, BodyModel, load_body_model
from hmr.data.datasets import SYNTH_META, SYNTH_SPLITS
from hmr.data.people import sample_betas, sample_category, sample_pose
from hmr.geometry import Camera, axis_angle_to_matrix, matrix_to_axis_angle
from hmr.io.atomic import atomic_path
from hmr.render import Renderer

GENERATOR_VERSION = 1
DEFAULT_IMAGE_SIZES = ((640, 480), (480, 640), (512, 512))
MIN_VISIBLE_PX = 30
TRUNCATED_FRACTION = 0.25  # share of people placed where the image border may cut them
BOX_EXPAND = 1.2
EVAL_NAME = os.path.basename(SYNTH_SPLITS["val"])  # the readers find both splits by these names
_IMAGE_EXT = (".jpg", ".jpeg", ".png")

# Skin tones (RGB) from light to dark; a person's tone is a random blend of two neighbours.
_SKIN_TONES = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 105), (198, 134, 66), (141, 85, 36),
                        (92, 58, 34)], np.float64) / 255  # fmt: skip
# Body part of each SMPL joint (the vertex's dominant skinning weight picks its joint).
_PART_OF_JOINT = {
    "pelvis": "trousers", "left_hip": "trousers", "right_hip": "trousers", "left_knee": "shins",
    "right_knee": "shins", "left_ankle": "shoes", "right_ankle": "shoes", "left_foot": "shoes",
    "right_foot": "shoes", "spine1": "shirt", "spine2": "shirt", "spine3": "shirt", "left_collar": "shirt",
    "right_collar": "shirt", "left_shoulder": "shirt", "right_shoulder": "shirt", "left_elbow": "forearms",
    "right_elbow": "forearms", "neck": "skin", "head": "skin", "left_wrist": "skin", "right_wrist": "skin",
    "left_hand": "skin", "right_hand": "skin",
}  # fmt: skip
_PARTS = ("skin", "shirt", "forearms", "trousers", "shins", "shoes")


@dataclasses.dataclass
class SynthImage:
    """One generated image: RGB (H, W, 3) uint8, the annotated people's dicts (the ``data.pyd`` fields) and
    their visible instance masks (P, H, W) bool, in the same order."""

    image: np.ndarray
    people: list[dict]
    masks: np.ndarray


@dataclasses.dataclass
class SynthSummary:
    out_dir: Path
    train_images: int
    eval_images: int
    train_people: int
    eval_people: int
    shards: int
    shards_written: int
    shards_skipped: int
    seconds: float


class SynthGenerator:
    """Draws :class:`SynthImage` s; keeps one :class:`Renderer` per image size (use from one thread)."""

    def __init__(self, body_model: BodyModel | None = None, *, backgrounds: str | os.PathLike | None = None,
                 people_per_image: int | tuple[int, int] = (1, 3),
                 image_size: tuple[int, int] | Sequence[tuple[int, int]] = DEFAULT_IMAGE_SIZES):  # fmt: skip
        self.body_model = body_model if body_model is not None else load_body_model()
        self.sizes = _image_sizes(image_size)
        lo, hi = (people_per_image, people_per_image) if isinstance(people_per_image, int) else people_per_image
        if not 1 <= lo <= hi:
            raise ValueError(f"people_per_image must be >= 1 (or a range lo <= hi), got {people_per_image}")
        self.people_range = (int(lo), int(hi))
        self.backgrounds = _background_files(backgrounds)
        m = self.body_model
        self.faces = m.faces.cpu().numpy()
        joint_names = m.joint_names if len(m.joint_names) == len(SMPL_JOINT_NAMES) else SMPL_JOINT_NAMES
        part_names = [_PART_OF_JOINT.get(n, "shirt") for n in joint_names]
        dominant = m.weights.argmax(1).cpu().numpy()
        self.vertex_part = np.array([_PARTS.index(part_names[j]) for j in dominant])
        self.kp_sets = [(name, size) for name, size in (("openpose25", 25), ("extra19", 19))]
        self._renderers: dict[tuple[int, int], Renderer] = {}

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers = {}

    def renderer(self, width: int, height: int) -> Renderer:
        if (width, height) not in self._renderers:
            self._renderers[(width, height)] = Renderer(width, height)
        return self._renderers[(width, height)]

    # ------------------------------------------------------------------------------------------ one image
    def image(self, rng: np.random.Generator, image_size: tuple[int, int] | None = None) -> SynthImage:
        """One image drawn from ``rng`` (its size from the generator's sizes unless ``image_size``)."""
        w, h = image_size or self.sizes[int(rng.integers(len(self.sizes)))]
        for _ in range(5):  # an image whose people are all too hidden is drawn again
            out = self._draw(rng, w, h)
            if out.people:
                return out
        return out

    def _draw(self, rng: np.random.Generator, w: int, h: int) -> SynthImage:
        m = self.body_model
        dt = m.v_template.dtype
        focal = float(rng.uniform(0.7, 1.8) * max(w, h))
        pp = np.array([w / 2, h / 2])
        elev, roll = np.radians(rng.uniform(-10, 35)), np.radians(rng.uniform(-8, 8))
        # World (y up, the body frame) -> camera (y down): upright diag(1, -1, -1) turns a body facing +z to face
        # the camera; the camera looking down by ``elev`` is a rotation about its x axis, then roll about z.
        cam_rot = _rot([0, 0, roll]) @ _rot([elev, 0, 0]) @ np.diag([1.0, -1.0, -1.0])
        n = int(rng.integers(self.people_range[0], self.people_range[1] + 1))
        orient, pose, betas = [], [], []
        for _ in range(n):
            go_body, bp = sample_pose(sample_category(rng), rng)
            yaw = rng.uniform(0, 2 * math.pi)
            orient.append(_axis_angle(cam_rot @ _rot([0, yaw, 0]) @ _rot(go_body)))
            pose.append(bp.reshape(-1))
            betas.append(sample_betas(rng, min(m.num_betas, 10)))
        # Ground truth is what the float32 values written to disk give.
        orient, pose = np.float32(orient), np.float32(pose)
        nb = len(betas[0])
        betas = np.pad(np.float32(betas), ((0, 0), (0, 10 - nb)))  # (n, 10): models with fewer betas get zeros
        t = {k: torch.as_tensor(v, dtype=dt) for k, v in (("o", orient), ("p", pose), ("b", betas))}
        with torch.no_grad():
            rest = m(t["o"], t["p"], t["b"][:, :nb])
        verts0 = rest.vertices.double().numpy()
        transl = self._place(rng, verts0, rest.joints.double().numpy(), focal, pp, w, h)
        keep = [i for i in range(n) if transl[i] is not None]
        transl = np.float32([transl[i] for i in keep]).reshape(-1, 3)
        with torch.no_grad():
            out = m(t["o"][keep], t["p"][keep], t["b"][keep][:, :nb], torch.as_tensor(transl, dtype=dt))
        verts = out.vertices.float().numpy()
        colors = [self._colors(rng) for _ in keep]
        camera = Camera(torch.tensor([[focal, focal]]), torch.as_tensor(pp[None]), torch.tensor([[float(w), float(h)]]))
        bg = self._background(rng, w, h)
        r = self.renderer(w, h).render(list(verts), self.faces, camera, colors=colors, background=bg, maps=True)
        kp3d = np.zeros((len(keep), 44, 4), np.float32)
        start = 0
        for name, size in self.kp_sets:
            if name in out.keypoints:
                kp3d[:, start : start + size, :3] = out.keypoints[name].float().numpy()
                kp3d[:, start : start + size, 3] = 1.0
            start += size
        kp2d = _project(kp3d, focal, pp, w, h)
        kp2d[kp3d[..., 3] == 0] = 0  # keypoints the body model lacks: zeros, confidence 0
        people, masks = [], []
        for k, i in enumerate(keep):
            mask = r.mask == k + 1
            if mask.sum() < MIN_VISIBLE_PX:
                continue
            p = _project(verts[k][None].astype(np.float64), focal, pp, w, h, conf=False)[0]
            lo, hi = p.min(0), p.max(0)
            size = (hi - lo) * BOX_EXPAND
            people.append({
                "keypoints_2d": kp2d[k],
                "keypoints_3d": kp3d[k],
                "center": ((lo + hi) / 2).astype(np.float32),
                "scale": (size / 200.0).astype(np.float32),
                "body_pose": np.concatenate([orient[i], pose[i]]).astype(np.float32),
                "betas": betas[i],
                "has_body_pose": np.float32(1.0),
                "has_betas": np.float32(1.0),
                "extra_info": {"detection_npz_idx": len(masks)},
                "focal_length": np.float32([focal, focal]),
                "principal_point": pp.astype(np.float32),
                "transl": transl[k],
                "body_model": str(m.name),
            })  # fmt: skip
            masks.append(mask)
        masks = np.stack(masks) if masks else np.zeros((0, h, w), bool)
        return SynthImage(r.image, people, masks)

    def _place(self, rng, verts0, joints0, focal, pp, w, h) -> list[np.ndarray | None]:
        """Camera-frame translation of each person (None: no free place found): size, image position, and 3D
        boxes disjoint from the people placed before."""
        boxes, out = [], []
        for v, jts in zip(verts0, joints0, strict=True):
            lo, hi = v.min(0), v.max(0)
            centre0, ext = (lo + hi) / 2, hi - lo
            found = None
            for _ in range(30):
                fill = rng.uniform(0.3, 0.9)
                z = focal * max(ext[0], ext[1]) / (fill * h)
                z = max(z, ext[2] / 2 + 0.3)  # keep the whole mesh well in front of the camera
                if rng.random() < TRUNCATED_FRACTION:
                    uv = rng.uniform([-0.15, 0.0], [1.15, 1.0]) * (w, h)
                else:
                    uv = rng.uniform([0.15, 0.3], [0.85, 0.7]) * (w, h)
                tr = np.array([(uv[0] - pp[0]) / focal * z, (uv[1] - pp[1]) / focal * z, z]) - centre0
                j = _project((jts + tr)[None], focal, pp, w, h)[0]
                if j[:, 2].sum() < 8:  # too little of the body inside the image
                    continue
                box = np.stack([lo + tr, hi + tr])
                if any(np.all(box[0] < b[1]) and np.all(b[0] < box[1]) for b in boxes):
                    continue
                found = tr
                break
            if found is not None:
                boxes.append(np.stack([lo + found, hi + found]))
            out.append(found)
        return out

    def person_colors(self, rng: np.random.Generator) -> np.ndarray:
        """(V, 3) per-vertex colours of one person as this generator draws them (used by hmr.data.calibration)."""
        return self._colors(rng)

    def _colors(self, rng) -> np.ndarray:
        """(V, 3) per-vertex colours in [0, 1]: skin, shirt, trousers and shoes of one person."""
        a = rng.uniform(0, len(_SKIN_TONES) - 1)
        i = min(int(a), len(_SKIN_TONES) - 2)
        skin = _SKIN_TONES[i] * (1 - (a - i)) + _SKIN_TONES[i + 1] * (a - i)
        shirt = _cloth(rng)
        trousers = _cloth(rng, dark=0.5)
        shoes = _cloth(rng, dark=0.7)
        forearms = shirt if rng.random() < 0.5 else skin  # long or short sleeves
        shins = trousers if rng.random() < 0.8 else skin  # trousers or shorts
        table = np.stack([skin, shirt, forearms, trousers, shins, shoes])
        return table[self.vertex_part]

    def _background(self, rng, w: int, h: int) -> np.ndarray:
        if self.backgrounds:
            for _ in range(5):
                img = cv2.imread(str(self.backgrounds[int(rng.integers(len(self.backgrounds)))]), cv2.IMREAD_COLOR)
                if img is not None:
                    return _random_crop(rng, cv2.cvtColor(img, cv2.COLOR_BGR2RGB), w, h)
        return procedural_background(rng, w, h)


# --------------------------------------------------------------------------------------------- helpers
def _rot(aa) -> np.ndarray:
    return axis_angle_to_matrix(torch.as_tensor(np.asarray(aa, np.float64))[None])[0].numpy()


def _axis_angle(r: np.ndarray) -> np.ndarray:
    return matrix_to_axis_angle(torch.as_tensor(r)[None])[0].numpy()


def _project(points: np.ndarray, focal: float, pp: np.ndarray, w: int, h: int, conf: bool = True) -> np.ndarray:
    """(N, K, 3|4) camera-frame points -> (N, K, 3) pixels + in-image flag times the points' own confidence
    (or (N, K, 2) with ``conf=False``). Same pinhole as :meth:`hmr.geometry.Camera.project`."""
    xyz = np.asarray(points, np.float64)[..., :3]
    z = np.where(np.abs(xyz[..., 2:]) < 1e-9, 1e-9, xyz[..., 2:])
    uv = xyz[..., :2] / z * focal + pp
    if not conf:
        return uv
    inside = (xyz[..., 2] > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)
    c = inside * (points[..., 3] if points.shape[-1] == 4 else 1.0)
    return np.concatenate([uv, c[..., None]], -1).astype(np.float32)


def _cloth(rng, dark: float = 0.0) -> np.ndarray:
    """A random garment colour (HSV), darker on average with ``dark``."""
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(20, 230), rng.integers(40, int(250 - 120 * dark))]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0


def procedural_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """(h, w, 3) uint8: a random two-colour gradient, smoothed noise, and a few random shapes and lines."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    s = (xx * math.cos(ang) + yy * math.sin(ang)) / max(w, h)
    s = (s - s.min()) / max(float(np.ptp(s)), 1e-6)
    img = c0 * (1 - s[..., None]) + c1 * s[..., None]
    cell = int(rng.integers(4, 24))
    noise = rng.normal(0, 1, (max(2, h // cell), max(2, w // cell), 3)).astype(np.float32)
    img += cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) * rng.uniform(8, 30)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if kind == 0:
            cv2.rectangle(img, p0, p1, color, -1)
        elif kind == 1:
            cv2.circle(img, p0, int(rng.integers(3, max(4, max(w, h) // 4))), color, -1, cv2.LINE_AA)
        else:
            cv2.line(img, p0, p1, color, int(rng.integers(1, 6)), cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.0))


def _random_crop(rng, img: np.ndarray, w: int, h: int) -> np.ndarray:
    ih, iw = img.shape[:2]
    scale = min(iw / w, ih / h) * rng.uniform(0.5, 1.0)  # the crop has the output's aspect ratio
    cw, ch = max(1, int(w * scale)), max(1, int(h * scale))
    x0, y0 = int(rng.integers(0, iw - cw + 1)), int(rng.integers(0, ih - ch + 1))
    crop = img[y0 : y0 + ch, x0 : x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA))


def _image_sizes(image_size) -> list[tuple[int, int]]:
    sizes = (
        [image_size]
        if len(image_size) == 2 and all(isinstance(v, (int, np.integer)) for v in image_size)
        else image_size
    )
    sizes = [(int(a), int(b)) for a, b in sizes]
    if not sizes or any(a < 16 or b < 16 for a, b in sizes):
        raise ValueError(f"image sizes must be (W, H) of at least 16 px, got {image_size}")
    return sizes


def _background_files(folder) -> list[Path]:
    if folder is None:
        return []
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in _IMAGE_EXT)
    if not files:
        raise FileNotFoundError(f"{folder}: no .jpg/.png background images found")
    return files


def npz_bytes(arrays: dict[str, np.ndarray], compress: bool = False) -> bytes:
    """np.savez-compatible bytes with fixed zip timestamps (np.savez stamps the current time, which would make
    identical data give different bytes)."""
    buf = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", mode) as zf:
        for key, val in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = mode
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(val), allow_pickle=False)
    return buf.getvalue()


def encode_jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The RNG image ``index`` of a run with ``seed`` is drawn from (eval images first, then train)."""
    return np.random.default_rng([int(seed), int(index)])


def _eval_columns(rows: list[tuple[str, dict]], body_model: str) -> dict[str, np.ndarray]:
    def stack(key, shape, fn=lambda p, k: p[k]):
        return np.asarray([fn(p, key) for _, p in rows], np.float32).reshape(len(rows), *shape)

    return {
        "imgname": np.array([name for name, _ in rows], dtype="<U64").reshape(len(rows)),
        "center": stack("center", (2,)),
        "scale": stack("scale", (2,), lambda p, k: p[k] * 200.0),
        "body_keypoints_2d": stack("keypoints_2d", (25, 3), lambda p, k: p[k][:25]),
        "extra_keypoints_2d": stack("keypoints_2d", (19, 3), lambda p, k: p[k][25:]),
        "body_keypoints_3d": stack("keypoints_3d", (25, 4), lambda p, k: p[k][:25]),
        "extra_keypoints_3d": stack("keypoints_3d", (19, 4), lambda p, k: p[k][25:]),
        "body_pose": stack("body_pose", (72,)),
        "has_body_pose": stack("has_body_pose", ()),
        "betas": stack("betas", (10,)),
        "has_betas": stack("has_betas", ()),
        "focal_length": stack("focal_length", (2,)),
        "principal_point": stack("principal_point", (2,)),
        "transl": stack("transl", (3,)),
        "body_model": np.array(body_model),
    }


# -------------------------------------------------------------------------------------------- the writer
def generate(out_dir: str | os.PathLike, num_images: int, *, body_model: BodyModel | None = None, seed: int = 0,
             backgrounds: str | os.PathLike | None = None, people_per_image: int | tuple[int, int] = (1, 3),
             image_size: tuple[int, int] | Sequence[tuple[int, int]] = DEFAULT_IMAGE_SIZES, shard_size: int = 100,
             eval_fraction: float = 0.1, progress: bool = True) -> SynthSummary:  # fmt: skip
    """Write ``num_images`` synthetic images under ``out_dir`` (layout in the module doc); resumes a partial run.

    The first ``round(num_images * eval_fraction)`` images form the eval split, the rest the train shards
    (``shard_size`` images each).
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    out = Path(out_dir)
    if num_images < 0 or shard_size < 1 or not 0.0 <= eval_fraction <= 1.0:
        raise ValueError("need num_images >= 0, shard_size >= 1 and 0 <= eval_fraction <= 1")
    gen = SynthGenerator(body_model, backgrounds=backgrounds, people_per_image=people_per_image,
                         image_size=image_size)  # fmt: skip
    n_eval = int(round(num_images * eval_fraction))
    n_train = num_images - n_eval
    shards = [list(range(n_eval + s, min(n_eval + s + shard_size, num_images))) for s in range(0, n_train, shard_size)]
    train_dir, eval_dir = out / SYNTH_SPLITS["train"], out / os.path.dirname(SYNTH_SPLITS["val"])
    train_dir.mkdir(parents=True, exist_ok=True)
    for stale in train_dir.glob(".*.tar.tmp"):  # left by an interrupted run
        stale.unlink()
    bar = tqdm(total=num_images, disable=not progress, unit="img", desc="synth")
    eval_people = train_people = written = skipped = 0
    try:
        eval_npz = eval_dir / EVAL_NAME
        if n_eval and eval_npz.exists():
            with np.load(eval_npz, allow_pickle=False) as data:
                eval_people = len(data["imgname"])
            bar.update(n_eval)
        elif n_eval:
            rows = []
            for i in range(n_eval):
                key = f"synth_i{i:06d}"
                img = gen.image(image_rng(seed, i))
                with atomic_path(eval_dir / "images" / f"{key}.jpg") as tmp:
                    tmp.write_bytes(encode_jpeg(img.image))
                rows += [(f"images/{key}.jpg", p) for p in img.people]
                bar.update(1)
            with atomic_path(eval_npz) as tmp:
                tmp.write_bytes(npz_bytes(_eval_columns(rows, gen.body_model.name)))
            eval_people = len(rows)
        for s, indices in enumerate(shards):
            final = train_dir / f"{s:06d}.tar"
            if final.exists():
                train_people += _count_people(final)
                skipped += 1
                bar.update(len(indices))
                continue
            tmp = train_dir / f".{s:06d}.tar.tmp"
            try:
                train_people += _write_shard(tmp, gen, seed, s, indices, bar)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
            written += 1
    finally:
        bar.close()
        gen.close()
    summary = SynthSummary(out, n_train, n_eval, train_people, eval_people, len(shards), written, skipped,
                           time.perf_counter() - t0)  # fmt: skip
    meta = {
        "generator": "hmr.data.synth",
        "generator_version": GENERATOR_VERSION,
        "arguments": {
            "num_images": num_images, "seed": seed, "backgrounds": None if backgrounds is None else str(backgrounds),
            "people_per_image": list(gen.people_range), "image_size": [list(s) for s in gen.sizes],
            "shard_size": shard_size, "eval_fraction": eval_fraction,
        },
        "body_model": gen.body_model.name,
        "counts": {"train_images": n_train, "eval_images": n_eval, "train_people": train_people,
                   "eval_people": eval_people, "shards": len(shards)},
    }  # fmt: skip
    with atomic_path(out / SYNTH_META) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return summary


def _write_shard(tmp: Path, gen: SynthGenerator, seed: int, shard: int, indices: list[int], bar) -> int:
    people = 0
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for i in indices:
            key = f"synth_s{shard:06d}_i{i:06d}"
            img = gen.image(image_rng(seed, i))
            members = {
                f"{key}.data.pyd": pickle.dumps(img.people, protocol=4),
                f"{key}.detection.npz": npz_bytes({"masks": img.masks}, compress=True),
                f"{key}.jpg": encode_jpeg(img.image),
            }
            for name in sorted(members):  # webdataset groups a sample's members by consecutive key
                _add_member(tar, name, members[name])
            people += len(img.people)
            bar.update(1)
    return people


def _count_people(shard: Path) -> int:
    from hmr.io.safe_pickle import loads_pickle

    n = 0
    with tarfile.open(shard) as tar:
        for member in tar:
            if member.name.endswith(".data.pyd"):
                n += len(loads_pickle(tar.extractfile(member).read(), f"{shard}:{member.name}"))
    return n
