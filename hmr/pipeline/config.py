"""The pipeline's one typed config: what ``hmr demo``, ``hmr.predict`` and (later) the web page take.

Load it with ``hmr.config.load(PipelineConfig, path, ["section.key=value", ...])``; ``hmr config show``
prints the resolved YAML. Each field's comment is its documentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hmr.detection.detector import DEFAULT_THRESHOLD
from hmr.fitting import FitConfig, StageConfig
from hmr.io.exports import OUTPUT_FORMATS
from hmr.io.images import MAX_PIXELS
from hmr.models.precision import PRECISIONS
from hmr.pipeline.observe import BOX_ONLY_MIN_SCORE

RUNTIMES = ("auto", "torch", "onnx")


@dataclass
class BodySection:
    smpl: str | None = None  # SMPL .pkl/.npz or its folder; None: $HMR_SMPL_PATH, else the bundled hmr-anny-v1
    smpl_j19: str | None = None  # SMPL_to_J19.pkl: HMR 2.0's 19 extra keypoints, for networks with SMPL


@dataclass
class DetectorSection:
    threshold: float = DEFAULT_THRESHOLD  # person score threshold (docs/detection.md)
    tiles: bool = True  # images: a tiled pass that finds small people (~5x the time); video never tiles
    box_only_min_score: float = BOX_ONLY_MIN_SCORE  # a box with no landmarks is kept (box only) from this score


@dataclass
class NetworkSection:
    checkpoint: str | None = None  # network weights or registry name (hmr model list); None: keypoint fitting
    refine: bool = False  # with a checkpoint: refine the network's meshes by fitting them to the landmarks
    runtime: str = "auto"  # torch, onnx (onnxruntime; checkpoint = a file from hmr model export-onnx) or auto: by suffix
    precision: str = "auto"  # fp32, bf16 (autocast) or auto: bf16 where the device has it natively (torch runtime)


@dataclass
class CameraSection:
    focal: float | None = None  # pixels; None: the image diagonal (docs/outputs.md)
    intrinsics: tuple[float, float, float, float] | None = None  # fx, fy, cx, cy pixels; overrides focal


@dataclass
class TrackingSection:
    detect_every: int | None = None  # video: run the detector every K frames, track between; None: 1, camera 5
    min_iou: float = 0.2  # a track and a box match from this overlap ...
    max_joint_dist: float = 0.5  # ... or when their 3D joints are this close (m) and the boxes near
    max_shift: float = 0.5  # near: box centres at most this many box heights apart
    max_age: int = 10  # frames a track survives without a detection


@dataclass
class SmoothingSection:
    """One-Euro filter on the body parameters (hmr.tracking.OneEuroFilter)."""

    min_cutoff: float = 1.0  # Hz
    beta: float = 1.0  # speed coefficient: higher follows fast motion more closely, smooths less
    d_cutoff: float = 1.0  # Hz, for the speed estimate


@dataclass
class OutputsSection:
    # per-person files (docs/outputs.md): obj, ply, glb meshes; skinned (rigged, animated .glb) and bvh
    # (skeleton animation), for a video one per track
    formats: tuple[str, ...] = ("obj",)
    pictures: bool = True  # overlay and side-view PNGs, video mp4
    overwrite: bool = False  # redo inputs whose outputs exist (default: skip those made from the same content)
    max_pixels: int = MAX_PIXELS  # refuse larger images and video frames, from their header; 0: no limit


@dataclass
class ThreadsSection:
    """Threads per stage (0: the library's default, one per core); benchmarks/bench_threads.py and
    bench_demo.py measured these."""

    fitting: int = 1  # torch: the fit's small tensors gain nothing from a second thread and lose much to a busy core
    network: int = 0  # torch: the networks' large products do use every core
    # onnxruntime's intra-op threads of the person detector: in video it runs beside the fit and the renderer
    # (VideoSession.run), where 2 threads made one person's video 12.6 fps against 19.3 with 1; a still image's
    # detection takes 18 ms instead of 12.
    detector: int = 1


@dataclass
class PipelineConfig:
    device: str = "cpu"  # cpu, cuda or mps
    threads: ThreadsSection = field(default_factory=ThreadsSection)
    body: BodySection = field(default_factory=BodySection)
    detector: DetectorSection = field(default_factory=DetectorSection)
    network: NetworkSection = field(default_factory=NetworkSection)
    camera: CameraSection = field(default_factory=CameraSection)
    # For BlazePose (docs/fitting.md): limbs below visibility 0.5 are mostly invented (cut off by the border,
    # hidden); its small systematic offsets drive weakly seen shape components to the bound without a
    # shape-prior floor; nothing in one image tells height, so it stays near the mean. Video frames after a
    # track's first keep its shape (one body per person; refitted, the priors would pull it a little to the
    # mean at every frame).
    fitting: FitConfig = field(default_factory=lambda: FitConfig(
        visible_confidence=0.5, shape_prior_floor=1.0, height_prior=1000.0,
        warm_stages=(StageConfig(iterations=10, lr=0.02, prior_scale=0.01, lm_iterations=10, shape=False),)))  # fmt: skip
    tracking: TrackingSection = field(default_factory=TrackingSection)
    smoothing: SmoothingSection = field(default_factory=SmoothingSection)
    outputs: OutputsSection = field(default_factory=OutputsSection)

    def validate(self) -> None:
        if self.network.refine and self.network.checkpoint is None:
            raise ValueError("network.refine needs network.checkpoint; without a network the pipeline already fits")
        bad = [f for f in self.outputs.formats if f not in OUTPUT_FORMATS]
        if bad:
            raise ValueError(f"outputs.formats: unknown {bad}; choose from {', '.join(OUTPUT_FORMATS)}")
        if self.network.precision not in PRECISIONS:
            raise ValueError(f"network.precision: unknown {self.network.precision!r}; choose from {', '.join(PRECISIONS)}")
        if self.network.runtime not in RUNTIMES:
            raise ValueError(f"network.runtime: unknown {self.network.runtime!r}; choose from {', '.join(RUNTIMES)}")
        if self.tracking.detect_every is not None and self.tracking.detect_every < 1:
            raise ValueError(f"tracking.detect_every must be >= 1, got {self.tracking.detect_every}")
        if self.camera.focal is not None and self.camera.focal <= 0:
            raise ValueError(f"camera.focal must be positive (pixels), got {self.camera.focal}")
        if self.threads.fitting < 0 or self.threads.network < 0 or self.threads.detector < 0:
            raise ValueError(f"threads: counts must be >= 0 (0: the library's default), got {self.threads}")
        if self.outputs.max_pixels < 0:
            raise ValueError(f"outputs.max_pixels must be >= 0, got {self.outputs.max_pixels}")
