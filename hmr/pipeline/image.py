"""The image pipeline behind ``hmr demo`` and ``hmr.predict``.

Default (no network weights): detect people -> BlazePose landmarks per box -> fit the body model (the free
default one, or SMPL when given) to the 2D landmarks and their 3D world landmarks, seen by the full-image
camera. With a checkpoint: detect -> crop -> HMR 2.0 network -> optional refinement by fitting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from hmr.body.keypoints import BLAZEPOSE33_NAMES
from hmr.detection import Detections, PersonDetector
from hmr.geometry import Camera
from hmr.landmarks import PoseEstimator, PoseKeypoints
from hmr.models.precision import resolve_precision
from hmr.outputs import MeshOutput
from hmr.pipeline.config import PipelineConfig
from hmr.pipeline.observe import observe_people

KEYPOINT_FORMAT = "blazepose33"


@dataclass
class PersonResult:
    """One person: box (4,) x1,y1,x2,y2 pixels, detection score and source, BlazePose landmarks (None when
    the landmark model saw no body), the mesh (a batch-1 :class:`MeshOutput`, CPU; None when nothing could
    be estimated) and, in video, the track id."""

    box: np.ndarray
    score: float
    detection: str
    keypoints: PoseKeypoints | None
    mesh: MeshOutput | None
    track_id: int | None = None

    @property
    def status(self) -> str:
        """``"mesh"``, ``"landmarks"`` (no mesh yet: a live camera's new person whose cold fit is running) or
        ``"box_only"`` (no landmarks and no network: only the box is known)."""
        if self.mesh is not None:
            return "mesh"
        return "landmarks" if self.keypoints is not None else "box_only"


@dataclass
class FrameResult:
    """All people in one image. camera: the full-image camera (batch 1) meshes are expressed in;
    method: ``"fit"``, ``"network"`` or ``"network+refine"``; body_model: the model's name."""

    image_size: tuple[int, int]
    camera: Camera
    method: str
    body_model: str
    people: list[PersonResult] = field(default_factory=list)


def default_focal(width: int, height: int) -> float:
    """Focal length (pixels) assumed when the camera is unknown: the image diagonal, i.e. a ~53 degree
    diagonal field of view like a typical phone or webcam (CLIFF's choice). HMR 2.0's 5000/256 * max(W, H)
    (~6 degrees) makes fitted people tens of metres away and their depth ill-conditioned (docs/outputs.md)."""
    return float(np.hypot(width, height))


def make_camera(width: int, height: int, focal: float | None = None, intrinsics=None) -> Camera:
    """Full-image camera: ``intrinsics`` (fx, fy, cx, cy) pixels, or ``focal`` (default :func:`default_focal`)
    with the principal point at the image centre."""
    if intrinsics is not None:
        fx, fy, cx, cy = (float(v) for v in intrinsics)
        if min(fx, fy) <= 0:
            raise ValueError(f"intrinsics need positive focal lengths, got fx={fx}, fy={fy}")
        return Camera(torch.tensor([[fx, fy]]), torch.tensor([[cx, cy]]), torch.tensor([[float(width), float(height)]]))
    if focal is not None and focal <= 0:
        raise ValueError(f"focal length must be positive (pixels), got {focal}")
    return Camera.full_image(width, height, default_focal(width, height) if focal is None else focal)


def resolve_body_model(smpl: str | os.PathLike | None = None, joint_regressor_extra: str | os.PathLike | None = None):
    """The user's SMPL file (``smpl`` or ``$HMR_SMPL_PATH``) when given, else the bundled default body model.
    ``joint_regressor_extra``: SMPL_to_J19.pkl, which HMR 2.0 networks need with SMPL (the default model
    defines those keypoints itself)."""
    from hmr.body import load_body_model

    return load_body_model(smpl, joint_regressor_extra=joint_regressor_extra)


def check_runtime(checkpoint: str | os.PathLike, runtime: str) -> str:
    """The runtime (``torch`` or ``onnx``) that ``network.runtime`` gives for ``checkpoint``: ``auto`` takes onnx
    for a ``.onnx`` file, torch otherwise; a mismatch is a ValueError saying what to do."""
    is_onnx = str(checkpoint).lower().endswith(".onnx")
    if runtime == "onnx" and not is_onnx:
        raise ValueError(f"network.runtime=onnx runs an exported .onnx file, and {checkpoint} is not one; export it "
                         f"first: hmr model export-onnx {checkpoint} --out FILE.onnx")  # fmt: skip
    if runtime == "torch" and is_onnx:
        raise ValueError(f"network.runtime=torch cannot run {checkpoint} (an ONNX export); use network.runtime=onnx "
                         "or auto, or give the torch checkpoint")  # fmt: skip
    return "onnx" if is_onnx else "torch"


class Pipeline:
    """Reusable image-to-meshes pipeline (models load once), configured by one :class:`PipelineConfig`.

    body_model: a :class:`hmr.body.BodyModel` to use instead of ``config.body`` (e.g. one already loaded).
    Safe to call from several threads: calls are serialised per stage (one lock for detection and landmarks,
    whose graph keeps state, one for the network and the fitters), so :meth:`observe` of one frame may run
    beside the fit of another (``hmr.pipeline.video.VideoSession.run``); for parallel work build one Pipeline
    per thread.
    """

    def __init__(self, config: PipelineConfig | None = None, body_model=None):
        cfg = config if config is not None else PipelineConfig()
        cfg.validate()
        runtime = None
        if cfg.network.checkpoint is not None:
            runtime = check_runtime(cfg.network.checkpoint, cfg.network.runtime)  # before any model loads
            if runtime == "onnx" and cfg.network.precision == "bf16":
                raise ValueError("network.precision=bf16 needs the torch runtime; an ONNX export runs in float32")
        device = cfg.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {device}: CUDA is not available here (torch {torch.__version__}); use cpu")
        if device == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError("device mps: Apple's MPS backend is not available here; use cpu")
        self.config = cfg
        self.device = device
        if body_model is None:
            body_model = resolve_body_model(cfg.body.smpl, cfg.body.smpl_j19)
        self.body_model = body_model.to(device)
        self.network = None
        if cfg.network.checkpoint is not None:
            from hmr.models import load_model

            self.network = load_model(cfg.network.checkpoint, body_model=self.body_model, device=device)
        # the network's backbone precision (hmr.models.precision); onnxruntime runs the float32 graph as it is
        self.precision = "fp32" if self.network is None or runtime == "onnx" else resolve_precision(
            cfg.network.precision, device)  # fmt: skip
        if self.network is not None:
            self.network.precision = self.precision
        self.detector = PersonDetector(threshold=cfg.detector.threshold, threads=cfg.threads.detector or None,
                                       device=device)  # fmt: skip
        # BlazePose's person masks feed the silhouette term of the free pipeline's fits
        self.pose = PoseEstimator(segmentation=self.network is None and cfg.fitting.silhouette_weight > 0)
        self._fitters: dict[tuple, object] = {}
        self._observe_lock = threading.Lock()  # detector and landmark graph
        self._fit_lock = threading.Lock()  # network and fitters
        self._cold_lock = threading.Lock()  # the fitters of :meth:`fit_cold`

    @property
    def method(self) -> str:
        if self.network is None:
            return "fit"
        return "network+refine" if self.config.network.refine else "network"

    def camera(self, width: int, height: int) -> Camera:
        return make_camera(width, height, self.config.camera.focal, self.config.camera.intrinsics)

    def __call__(self, image: np.ndarray, boxes: Detections | None = None, previous: list[MeshOutput | None] | None = None,
                 observations=None, tiles: bool | None = None, camera: Camera | None = None) -> FrameResult:  # fmt: skip
        """People and meshes in one RGB uint8 image.

        boxes: skip detection and use these. previous: per observed person its mesh in the previous video
        frame (fitting then starts there and runs the config's short ``warm_stages``) or None.
        observations: already computed :func:`observe_people` output. tiles: the detector's tiled pass
        (default ``config.detector.tiles``; video passes False). camera: this image's camera (batch 1;
        default: the config's ``camera`` section), e.g. a dataset's known intrinsics.
        """
        if observations is None:
            observations = self.observe(image, boxes, tiles)
        with self._fit_lock:
            return self._frame(image, observations, previous, camera)

    def fit_cold(self, image: np.ndarray, observations, camera: Camera | None = None) -> list[MeshOutput | None]:
        """Cold fits of ``observations`` (people of ``image`` without a start), as :meth:`__call__` fits them in a
        video frame, but on fitters of their own, so that a video's frames go on being fitted meanwhile."""
        h, w = image.shape[:2]
        camera = camera if camera is not None else self.camera(w, h)
        with self._cold_lock:
            return self._fit(observations, camera, [None] * len(observations), warm=True, lane="cold")

    def observe(self, image: np.ndarray, boxes: Detections | None = None, tiles: bool | None = None):
        """The 2D stage alone: people (boxes) and their landmarks (:func:`observe_people`)."""
        with self._observe_lock:
            return self._observe(image, boxes, tiles)

    def _observe(self, image, boxes, tiles):
        tiles = self.config.detector.tiles if tiles is None else tiles
        detect = None if boxes is not None else (lambda im: self.detector(im, tiles=tiles))
        return observe_people(image, detect, self.pose, boxes, self.config.detector.box_only_min_score)

    def _frame(self, image, obs, previous, camera=None) -> FrameResult:
        h, w = image.shape[:2]
        camera = camera if camera is not None else self.camera(w, h)
        meshes: list[MeshOutput | None] = [None] * len(obs)
        if self.network is not None and obs:
            net = self._run_network(image, np.stack([p.box for p in obs]), camera)
            meshes = [net[i] for i in range(len(obs))]
            if self.config.network.refine:
                meshes = self._fit(obs, camera, meshes, warm=False)
        elif obs:
            meshes = self._fit(obs, camera, previous or [None] * len(obs), warm=True)
        people = [  # masks (a full image each) are dropped once fitted
            PersonResult(p.box, p.score, p.source, None if p.keypoints is None else p.keypoints.without_mask(),
                         None if m is None else m.detach().to("cpu"))  # fmt: skip
            for p, m in zip(obs, meshes, strict=True)
        ]
        return FrameResult((w, h), camera, self.method, self.body_model.name, people)

    def _run_network(self, image: np.ndarray, boxes: np.ndarray, camera: Camera) -> MeshOutput:
        from hmr.pipeline.crop import person_crops

        cfg = self.network.config
        pix, centres, sides = person_crops(image, boxes, cfg.image_size, cfg.bbox_shape)
        n = len(boxes)
        with torch.no_grad(), torch_threads(self.config.threads.network):
            return self.network(
                self.network.normalize(pix.to(self.device)),
                box_center=torch.from_numpy(centres),
                box_size=torch.from_numpy(sides),
                image_size=camera.image_size.expand(n, 2),
                focal_length=camera.focal_length[:, 0].expand(n),
            )

    def _fitter(self, camera: Camera, warm: bool, lane: str = "frame"):
        """A fitter for this camera, kept across calls: building one (keypoint maps, reduced body model)
        costs more than a warm-started fit. ``warm``: starts are previous video frames, refined with the
        config's ``warm_stages``; otherwise starts are network outputs, refined with ``refine_stages``.
        ``lane``: fitters used at the same time (a frame's and :meth:`fit_cold`'s) are different objects."""
        from hmr.fitting import SequenceFitter

        key = (warm, lane, *torch.cat([camera.focal_length, camera.principal_point, camera.image_size], 1)[0].tolist())
        if key not in self._fitters:
            cfg = self.config.fitting
            if warm:
                cfg = dataclasses.replace(cfg, refine_stages=cfg.warm_stages)
            self._fitters[key] = SequenceFitter(
                self.body_model, camera.to(self.device), KEYPOINT_FORMAT, cfg, self.device
            )
        return self._fitters[key]

    def _fit(self, obs, camera: Camera, start: list[MeshOutput | None], warm: bool,
             lane: str = "frame") -> list[MeshOutput | None]:  # fmt: skip
        """Fit everyone with landmarks: people with a starting mesh in one batch, the others (cold) in another.
        People without landmarks keep their start (or None).

        Each batch is fitted on its own (``reset()``: no temporal term across calls, whose people may differ);
        video smoothing is done per track afterwards (``hmr.pipeline.video``)."""
        with torch_threads(self.config.threads.fitting):
            return self._fit_groups(obs, camera, start, warm, lane)

    def _fit_groups(self, obs, camera: Camera, start: list[MeshOutput | None], warm: bool,
                    lane: str = "frame") -> list[MeshOutput | None]:  # fmt: skip
        fitter = self._fitter(camera, warm, lane)
        out = list(start)
        with_kp = [i for i, p in enumerate(obs) if p.keypoints is not None]
        for group in ([i for i in with_kp if start[i] is not None], [i for i in with_kp if start[i] is None]):
            if not group:
                continue
            kps = [obs[i].keypoints for i in group]
            init = MeshOutput.cat([start[i] for i in group]) if start[group[0]] is not None else None
            if init is not None and warm:
                init = _reanchor(init, kps, camera)
            fitter.reset()
            masks = None if any(k.mask is None for k in kps) else np.stack([k.mask for k in kps])
            res = fitter.step(
                torch.from_numpy(np.stack([k.keypoints_2d for k in kps])).to(self.device),
                torch.from_numpy(np.stack([k.confidence for k in kps])).to(self.device),
                torch.from_numpy(np.stack([k.keypoints_3d for k in kps])).to(self.device),
                init=init.to(self.device) if init is not None else None,
                masks=masks,
            )
            for j, i in enumerate(group):
                out[i] = res[j]
        return out


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's thread count for the block (0: leave it as it is), restored after it. OpenMP keeps the count per
    thread, so blocks in several threads (a video's frame fit beside :meth:`Pipeline.fit_cold`) each set and
    restore their own thread's; threads started meanwhile begin with the last count set."""
    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _reanchor(prev: MeshOutput, kps: list[PoseKeypoints], camera: Camera) -> MeshOutput:
    """Move each previous-frame mesh, at its depth, so that its hip centre projects onto the detected one
    before the warm-started fit. Without it the short warm start lags behind people walking across the
    image and drifts (measured on tests/data/vtest_clip.mp4: pelvis 46 px off after 20 frames, 1-4 px with
    it). Scaling the depth by the torso's 2D size change was tried too: noisier depth, no better fit."""
    names = list(prev.keypoint_names)
    if prev.cam_t_full is None or not {"left_hip", "right_hip"} <= set(names):
        return prev
    mi = [names.index("left_hip"), names.index("right_hip")]
    bi = [BLAZEPOSE33_NAMES.index("left_hip"), BLAZEPOSE33_NAMES.index("right_hip")]
    f = camera.focal_length[0].to(prev.cam_t_full)
    c = camera.principal_point[0].to(prev.cam_t_full)
    t = prev.cam_t_full.clone()
    for b, kp in enumerate(kps):
        if (kp.confidence[bi] < 0.5).any():
            continue
        hip = prev.keypoints_3d[b, mi].to(t).mean(0)  # hip centre, camera frame without translation
        target = (torch.from_numpy(kp.keypoints_2d[bi]).to(t).mean(0) - c) / f
        t[b, :2] = target * (hip[2] + t[b, 2]) - hip[:2]
    return dataclasses.replace(prev, cam_t_full=t)
