"""SMPLify-style fitting of a body model to 2D keypoints (optionally 3D keypoints, a network's output, video).

Stages (``FitConfig``): (1) global orientation and translation from the torso keypoints with the body at
rest: the depth starts from the torso length and the focal length, the orientation from the image's
shoulder/hip directions and a set of yaw hypotheses; (2) full pose and shape with a robust Geman-McClure
reprojection loss and the priors of :mod:`hmr.fitting.priors`, annealed from strong to weak. With an
``init`` (a network's :class:`MeshOutput`, or the previous video frame) stage 1 is skipped when the
initial translation is known and the shorter ``refine_stages`` run instead.

The objective is :mod:`hmr.fitting.problem`, the solvers :mod:`hmr.fitting.solvers`, the order of stages
:mod:`hmr.fitting.fitter`.
"""

from __future__ import annotations

import torch

from hmr.body import BodyModel
from hmr.fitting.config import FitConfig
from hmr.fitting.fitter import Fitter
from hmr.fitting.keypoints import KEYPOINT_FORMATS, keypoint_map
from hmr.fitting.problem import as_tensor
from hmr.geometry import Camera
from hmr.outputs import MeshOutput

__all__ = ["KEYPOINT_FORMATS", "SequenceFitter", "fit", "keypoint_map"]


def fit(
    keypoints_2d,
    confidences,
    body_model: BodyModel,
    camera: Camera,
    init: MeshOutput | None = None,
    keypoints_3d=None,
    keypoint_format: str = "openpose25",
    config: FitConfig | None = None,
    device: str | torch.device | None = None,
    masks=None,
) -> MeshOutput:
    """Fit pose, shape and translation of ``body_model`` to keypoints seen by ``camera``.

    keypoints_2d: (B, K, 2) pixels in the image of ``camera``, or (T, P, K, 2) for T video frames of P
        people (frames are fitted jointly with a temporal smoothness term; each person keeps one shape).
    confidences: (B, K) or (T, P, K), >= 0; 0 (or NaN keypoints) means missing.
    camera: intrinsics with batch 1, B (or P, or T*P for video).
    init: a :class:`MeshOutput` for the same B (or T*P) people to refine (e.g. a network's prediction);
        its ``cam_t_full`` is used when present, otherwise the translation is estimated as in a cold start.
    keypoints_3d: optional (B, K, 3) / (T, P, K, 3) metres, e.g. BlazePose world landmarks; compared after
        the alignment ``config.keypoint_3d_alignment`` (default: unknown rotation, scale and origin). Missing
        entries may be NaN.
    keypoint_format: ``openpose25``, ``coco17``, ``blazepose33`` or any keypoint set the body model defines.
    device: where to optimise; default CUDA when available, else CPU. Outputs are on the inputs' device.
    masks: optional (B, H, W) person masks in [0, 1] in the image of ``camera`` (e.g. BlazePose's
        segmentation), single frames only: adds the silhouette term (``config.silhouette_weight``).

    Returns a :class:`MeshOutput` with B (or T*P, frame-major) people: rotations, betas, full-mesh vertices,
    the format's keypoints (``keypoints_3d``, without translation), ``cam_t_full``, ``focal_length``,
    ``keypoints_2d_full``. Crop-camera fields are filled only when ``init`` had them (re-derived from its box).
    """
    cfg = config or FitConfig()
    kp2d = as_tensor(keypoints_2d, "keypoints_2d")
    out_device = kp2d.device
    if kp2d.dim() == 3:
        frames, people = 1, kp2d.shape[0]
    elif kp2d.dim() == 4:
        frames, people = kp2d.shape[:2]
    else:
        raise ValueError(f"keypoints_2d has shape {tuple(kp2d.shape)}; expected (B, K, 2) or (T, P, K, 2)")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    fitter = Fitter(body_model, keypoint_format, cfg, torch.device(device))
    problem = fitter.problem
    targets = problem.targets(kp2d, confidences, keypoints_3d, camera, frames, people, masks)
    params = fitter.solve(problem.initial_params(targets, init), targets, init, cfg.refine_stages)
    return fitter.output(params, targets, init).to(out_device)


class SequenceFitter:
    """Online fitting of a video, frame by frame: each frame starts from the previous frame's result.

    The first frame is fitted cold (or from ``init`` with ``config.refine_stages``); later frames run
    ``config.warm_stages`` from the previous frame with a temporal term that penalises the joints'
    acceleration (constant-velocity prediction from the two previous frames). People are identified by their index in every frame (tracking is the caller's job).
    """

    def __init__(self, body_model: BodyModel, camera: Camera, keypoint_format: str = "openpose25",
                 config: FitConfig | None = None, device: str | torch.device | None = None):  # fmt: skip
        self.cfg = config or FitConfig()
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._fitter = Fitter(body_model, keypoint_format, self.cfg, torch.device(device))
        self.camera = camera
        self.reset()

    def reset(self) -> None:
        """Forget the previous frames (e.g. after a cut)."""
        self._previous: MeshOutput | None = None
        self._joints: list[torch.Tensor] = []

    def step(self, keypoints_2d, confidences, keypoints_3d=None, init: MeshOutput | None = None,
             masks=None) -> MeshOutput:  # fmt: skip
        """Fit one frame: keypoints_2d (P, K, 2), confidences (P, K), optional keypoints_3d (P, K, 3) and person
        masks (P, H, W) (the silhouette term of cold fits; from a start, only to judge keypoints)."""
        kp2d = as_tensor(keypoints_2d, "keypoints_2d")
        if kp2d.dim() != 3:
            raise ValueError(f"keypoints_2d has shape {tuple(kp2d.shape)}; expected (P, K, 2) for one frame")
        f = self._fitter
        problem = f.problem
        start = init if init is not None else self._previous
        if start is not None and start.batch_size != kp2d.shape[0]:
            raise ValueError(
                f"frame has {kp2d.shape[0]} people but the previous frame had {start.batch_size}; call reset()"
            )
        # from a start the stages run LM, which leaves the silhouette out: masks then only judge keypoints (a
        # person the warm start loses is refitted cold without it)
        targets = problem.targets(kp2d, confidences, keypoints_3d, self.camera, 1, kp2d.shape[0], masks,
                                  silhouette=start is None)  # fmt: skip
        if start is not None and len(self._joints) >= 2:
            targets.joint_prediction = 2 * self._joints[-1] - self._joints[-2]
        stages = self.cfg.refine_stages if init is not None else self.cfg.warm_stages
        # Warm frames keep the cold fit's regulariser (the mean pose): centred on the previous frame it let the
        # pose wander along what 2D keypoints cannot see, frame after frame.
        params = problem.initial_params(targets, start, anchor=init is not None)
        params = f.solve(params, targets, start, stages, flips=init is None)
        if start is not None and init is None:
            # People the warm start lost (fast motion, a tracking swap) are fitted again from scratch.
            lost = torch.nonzero(problem.reprojection_error(params, targets) > self.cfg.warm_restart_error)[:, 0]
            if len(lost):
                sub = targets.subset(lost)
                cold = f.fit_cold(problem.initial_params(sub, None), sub)
                for name in ("orient", "body_pose", "betas", "cam"):
                    getattr(params, name)[lost] = getattr(cold, name)
        out = f.output(params, targets, init)
        self._previous = out
        with torch.no_grad():
            _, joints = problem.forward(params, targets)
        self._joints = [*self._joints[-1:], joints]
        return out.to(kp2d.device)
