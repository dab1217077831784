"""SMPLify-style fitting of a body model to 2D keypoints (optionally 3D keypoints, a network's output, video).

Stages (``FitConfig``): (1) global orientation and translation from the torso keypoints with the body at
rest: the depth starts from the torso length and the focal length, the orientation from the image's
shoulder/hip directions and a set of yaw hypotheses; (2) full pose and shape with a robust Geman-McClure
reprojection loss and the priors of :mod:`hmr.fitting.priors`, annealed from strong to weak. With an
``init`` (a network's :class:`MeshOutput`, or the previous video frame) stage 1 is skipped when the
initial translation is known and the shorter ``refine_stages`` run instead.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
import weakref

import numpy as np
import torch

from hmr.body import KEYPOINT_SET_NAMES, SMPL_JOINT_NAMES, BodyModel, KeypointSet, KeypointSetUnavailableError
from hmr.body.lbs import ancestor_matrix, forward_kinematics
from hmr.fitting.config import FitConfig, StageConfig
from hmr.fitting.priors import HINGES, PosePrior, geman_mcclure, shape_regulariser
from hmr.fitting.reduced import ReducedBodyModel
from hmr.geometry import (
    Camera,
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    perspective_projection,
    procrustes_align,
    procrustes_transform,
    rot6d_to_matrix,
    so3_right_jacobian,
)
from hmr.geometry.camera import HMR2_CROP_SIZE, HMR2_FOCAL_LENGTH
from hmr.outputs import MeshOutput

KEYPOINT_FORMATS = ("openpose25", "coco17", "blazepose33")
_TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")


def keypoint_map(body_model: BodyModel, keypoint_format: str) -> tuple[KeypointSet, np.ndarray]:
    """The body model's definition of ``keypoint_format`` and which of its keypoints it can produce.

    A set the model defines is used as is. Otherwise each keypoint is taken by name from the model's other
    sets (e.g. COCO-17 from an SMPL model's OpenPose-25); keypoints no set names are marked unavailable
    and ignored by the fit.
    """
    if keypoint_format in body_model.keypoint_set_names:
        kp = body_model.keypoint_regressors[keypoint_format].definition()
        return kp, np.ones(kp.num, dtype=bool)
    if keypoint_format not in KEYPOINT_SET_NAMES:
        raise ValueError(
            f"unknown keypoint format {keypoint_format!r}; use one of {list(KEYPOINT_FORMATS)} or a keypoint set "
            f"of the body model ({body_model.keypoint_set_names})"
        )
    names = KEYPOINT_SET_NAMES[keypoint_format]
    sources = [body_model.keypoint_regressors[s].definition() for s in body_model.keypoint_set_names]
    rows, cols, weights = [], [], []
    available = np.zeros(len(names), dtype=bool)
    for k, name in enumerate(names):
        for src in sources:
            if name in src.names:
                sel = src.rows == src.names.index(name)
                rows.append(np.full(sel.sum(), k))
                cols.append(src.cols[sel])
                weights.append(src.weights[sel])
                available[k] = True
                break
    if not all(available[names.index(n)] for n in _TORSO):
        raise KeypointSetUnavailableError(
            f"body model {body_model.name!r} cannot produce the {keypoint_format} torso keypoints {list(_TORSO)} "
            f"(it defines the keypoint sets {body_model.keypoint_set_names}); add a {keypoint_format!r} keypoint "
            "set to the model"
        )
    kp = KeypointSet(names, np.concatenate(rows), np.concatenate(cols), np.concatenate(weights))
    return kp, available


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

    Returns a :class:`MeshOutput` with B (or T*P, frame-major) people: rotations, betas, full-mesh vertices,
    the format's keypoints (``keypoints_3d``, without translation), ``cam_t_full``, ``focal_length``,
    ``keypoints_2d_full``. Crop-camera fields are filled only when ``init`` had them (re-derived from its box).
    """
    cfg = config or FitConfig()
    kp2d = _as_tensor(keypoints_2d, "keypoints_2d")
    out_device = kp2d.device
    if kp2d.dim() == 3:
        frames, people = 1, kp2d.shape[0]
    elif kp2d.dim() == 4:
        frames, people = kp2d.shape[:2]
    else:
        raise ValueError(f"keypoints_2d has shape {tuple(kp2d.shape)}; expected (B, K, 2) or (T, P, K, 2)")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    fitter = _Fitter(body_model, keypoint_format, cfg, torch.device(device))
    targets = fitter.targets(kp2d, confidences, keypoints_3d, camera, frames, people)
    params = fitter.solve(fitter.initial_params(targets, init), targets, init, cfg.refine_stages)
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
        self._fitter = _Fitter(body_model, keypoint_format, self.cfg, torch.device(device))
        self.camera = camera
        self.reset()

    def reset(self) -> None:
        """Forget the previous frames (e.g. after a cut)."""
        self._previous: MeshOutput | None = None
        self._joints: list[torch.Tensor] = []

    def step(self, keypoints_2d, confidences, keypoints_3d=None, init: MeshOutput | None = None) -> MeshOutput:
        """Fit one frame: keypoints_2d (P, K, 2), confidences (P, K), optional keypoints_3d (P, K, 3)."""
        kp2d = _as_tensor(keypoints_2d, "keypoints_2d")
        if kp2d.dim() != 3:
            raise ValueError(f"keypoints_2d has shape {tuple(kp2d.shape)}; expected (P, K, 2) for one frame")
        f = self._fitter
        start = init if init is not None else self._previous
        if start is not None and start.batch_size != kp2d.shape[0]:
            raise ValueError(
                f"frame has {kp2d.shape[0]} people but the previous frame had {start.batch_size}; call reset()"
            )
        targets = f.targets(kp2d, confidences, keypoints_3d, self.camera, 1, kp2d.shape[0])
        if start is not None and len(self._joints) >= 2:
            targets.joint_prediction = 2 * self._joints[-1] - self._joints[-2]
        stages = self.cfg.refine_stages if init is not None else self.cfg.warm_stages
        # Warm frames keep the cold fit's regulariser (the mean pose): centred on the previous frame it let the
        # pose wander along what 2D keypoints cannot see, frame after frame.
        params = f.initial_params(targets, start, anchor=init is not None)
        params = f.solve(params, targets, start, stages, flips=init is None)
        if start is not None and init is None:
            # People the warm start lost (fast motion, a tracking swap) are fitted again from scratch.
            lost = torch.nonzero(f.reprojection_error(params, targets) > self.cfg.warm_restart_error)[:, 0]
            if len(lost):
                sub = targets.subset(lost)
                cold = f.fit_cold(f.initial_params(sub, None), sub)
                for name in ("orient", "body_pose", "betas", "cam"):
                    getattr(params, name)[lost] = getattr(cold, name)
        out = f.output(params, targets, init)
        self._previous = out
        with torch.no_grad():
            _, joints = f.forward(params, targets)
        self._joints = [*self._joints[-1:], joints]
        return out.to(kp2d.device)


# ------------------------------------------------------------------------------------------------ internals
def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    return x


@dataclasses.dataclass
class _Targets:
    kp2d: torch.Tensor  # (N, K, 2) pixels, N = frames * people (frame-major)
    conf: torch.Tensor  # (N, K), 0 where missing or unavailable
    scale: torch.Tensor  # (N,) person size in pixels
    camera: Camera  # batch N
    frames: int
    people: int
    kp3d: torch.Tensor | None = None  # (N, K, 3) metres
    conf3d: torch.Tensor | None = None  # (N, K)
    joint_prediction: torch.Tensor | None = None  # (N, J, 3) online temporal target
    pose_anchor: torch.Tensor | None = None  # (N, J-1, 3) the regulariser's centre when starting from an init

    def repeat(self, h: int) -> _Targets:
        """The same targets for ``h`` hypotheses per person (person p becomes people p*h .. p*h+h-1)."""
        rep = functools.partial(_repeat_people, frames=self.frames, people=self.people, h=h)
        cam = Camera(rep(self.camera.focal_length), rep(self.camera.principal_point), rep(self.camera.image_size))
        opt = {k: None if getattr(self, k) is None else rep(getattr(self, k)) for k in ("kp3d", "conf3d", "joint_prediction", "pose_anchor")}  # fmt: skip
        return _Targets(rep(self.kp2d), rep(self.conf), rep(self.scale), cam, self.frames, self.people * h, **opt)

    def subset(self, idx: torch.Tensor) -> _Targets:
        """People ``idx`` of a single-frame target set, without the warm-start terms."""
        cam = Camera(*(x[idx] for x in (self.camera.focal_length, self.camera.principal_point, self.camera.image_size)))
        opt = {k: None if getattr(self, k) is None else getattr(self, k)[idx] for k in ("kp3d", "conf3d")}
        return _Targets(self.kp2d[idx], self.conf[idx], self.scale[idx], cam, 1, len(idx), **opt)


@dataclasses.dataclass
class _Params:
    orient: torch.Tensor  # (N, 6) 6D global orientation
    body_pose: torch.Tensor  # (N, J-1, 3) axis-angle
    betas: torch.Tensor  # (P, S), shared by a person's frames
    cam: torch.Tensor  # (N, 3) translation as (x/z, y/z, log z)

    def transl(self) -> torch.Tensor:
        z = self.cam[:, 2:].exp()
        return torch.cat([self.cam[:, :2] * z, z], dim=-1)

    def repeat(self, frames: int, people: int, h: int) -> _Params:
        rep = functools.partial(_repeat_people, frames=frames, people=people, h=h)
        return _Params(rep(self.orient), rep(self.body_pose), self.betas.repeat_interleave(h, 0), rep(self.cam))

    def choose(self, frames: int, people: int, h: int, best: torch.Tensor) -> _Params:
        """Keep hypothesis ``best`` (P,) of each person (one choice for all their frames)."""
        idx = (torch.arange(people, device=best.device) * h + best).repeat(frames)
        idx = idx + torch.arange(frames, device=best.device).repeat_interleave(people) * people * h
        return _Params(self.orient[idx], self.body_pose[idx], self.betas[idx[:people]], self.cam[idx])


def _repeat_people(x: torch.Tensor, frames: int, people: int, h: int) -> torch.Tensor:
    """(T*P, ...) frame-major -> (T*P*h, ...) with each person repeated h times."""
    return x.reshape(frames, people, *x.shape[1:]).repeat_interleave(h, 1).reshape(-1, *x.shape[1:])


def _cam_from_transl(t: torch.Tensor) -> torch.Tensor:
    z = t[:, 2:].clamp_min(1e-3)
    return torch.cat([t[:, :2] / z, z.log()], dim=-1)


# Reduced models per body model, format and device, valid while the model's keypoint regressors are the same
# objects (a set added or replaced later rebuilds): building one costs ~20 ms, a noticeable share of a lone
# person's fit.
_REDUCED_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _reduced(body_model: BodyModel, keypoint_format: str, device: torch.device):
    """(keypoint names, available mask, ReducedBodyModel, limbs) for fitting ``keypoint_format``."""
    regressors = tuple(body_model.keypoint_regressors.items())
    per_model = _REDUCED_CACHE.setdefault(body_model, {})
    cached = per_model.get((keypoint_format, str(device)))
    if cached is None or cached[0] != regressors:  # modules compare by identity
        kp_def, available = keypoint_map(body_model, keypoint_format)
        smpl = tuple(body_model.joint_names) == SMPL_JOINT_NAMES
        cached = per_model[(keypoint_format, str(device))] = (
            regressors,
            kp_def.names,
            torch.as_tensor(available, device=device),
            ReducedBodyModel(body_model, kp_def).to(device=device, dtype=torch.float32),
            _limbs(body_model, kp_def) if smpl else [],
        )
    return cached[1:]


class _Fitter:
    def __init__(self, body_model: BodyModel, keypoint_format: str, cfg: FitConfig, device: torch.device):
        if not isinstance(body_model, BodyModel):
            raise ValueError(f"body_model must be an hmr.body.BodyModel, got {type(body_model).__name__}")
        if cfg.keypoint_3d_alignment not in ("similarity", "translation"):
            raise ValueError(
                f"keypoint_3d_alignment is {cfg.keypoint_3d_alignment!r}; use 'similarity' or 'translation'"
            )
        if cfg.solver not in ("lm", "adam"):
            raise ValueError(f"solver is {cfg.solver!r}; use 'lm' or 'adam'")
        self.cfg, self.device, self.body_model = cfg, device, body_model
        self.format = keypoint_format
        self.names, self.available, self.model, self.limbs = _reduced(body_model, keypoint_format, device)
        self.prior = PosePrior(body_model.joint_names, cfg.twist_weight).to(device)
        self.num_betas = min(cfg.num_betas, body_model.num_betas)
        self.torso = torch.as_tensor([self.names.index(n) for n in _TORSO], device=device)
        self.num_joints = body_model.num_joints

    # -------------------------------------------------------------------------------------- inputs
    def targets(self, kp2d, conf, kp3d, camera: Camera, frames: int, people: int) -> _Targets:
        n, k = frames * people, len(self.names)
        dev = self.device
        lead = tuple(kp2d.shape[:-2])
        if kp2d.shape[-2:] != (k, 2):
            raise ValueError(
                f"keypoints_2d has shape {tuple(kp2d.shape)}; expected (..., {k}, 2) for format {self.format!r}"
            )
        conf = _as_tensor(conf, "confidences")
        if tuple(conf.shape) != lead + (k,):
            raise ValueError(f"confidences has shape {tuple(conf.shape)}; expected {lead + (k,)}")
        kp2d = kp2d.reshape(n, k, 2).to(dev, torch.float32)
        conf = conf.reshape(n, k).to(dev, torch.float32)
        if (conf < 0).any():
            raise ValueError("confidences must be >= 0")
        valid = torch.isfinite(kp2d).all(-1) & torch.isfinite(conf) & (conf > self.cfg.min_confidence)
        valid &= self.available
        conf = torch.where(valid, conf, torch.zeros_like(conf))
        kp2d = torch.where(valid[..., None], kp2d, torch.zeros_like(kp2d))
        if (valid[:, self.torso].sum(-1) < 2).any():
            bad = torch.nonzero(valid[:, self.torso].sum(-1) < 2)[:, 0].tolist()
            raise ValueError(
                f"people {bad[:10]} have fewer than 2 of the torso keypoints {list(_TORSO)}; drop them or give "
                "an init with cam_t_full"
            )
        lo = torch.where(valid[..., None], kp2d, torch.full_like(kp2d, math.inf)).amin(1)
        hi = torch.where(valid[..., None], kp2d, torch.full_like(kp2d, -math.inf)).amax(1)
        scale = (hi - lo).amax(-1).clamp_min(1.0)
        t = _Targets(kp2d, conf, scale, _expand_camera(camera, frames, people).to(dev, torch.float32), frames, people)
        if kp3d is not None:
            kp3d = _as_tensor(kp3d, "keypoints_3d")
            if tuple(kp3d.shape) != lead + (k, 3):
                raise ValueError(f"keypoints_3d has shape {tuple(kp3d.shape)}; expected {lead + (k, 3)} (metres)")
            kp3d = kp3d.reshape(n, k, 3).to(dev, torch.float32)
            ok3 = torch.isfinite(kp3d).all(-1) & valid
            t.kp3d = torch.where(ok3[..., None], kp3d, torch.zeros_like(kp3d))
            t.conf3d = torch.where(ok3, conf, torch.zeros_like(conf))
        return t

    def initial_params(self, t: _Targets, init: MeshOutput | None, anchor: bool = True) -> _Params:
        """Parameters to start from: the mean pose, or ``init``; ``anchor``: the pose regulariser then pulls
        towards the init's pose (sets ``t.pose_anchor``)."""
        n, dev = t.kp2d.shape[0], self.device
        eye = torch.eye(3, device=dev)
        body_pose = self.prior.mean_pose.expand(n, -1, -1).clone()
        betas = torch.zeros(t.people, self.num_betas, device=dev)
        orient = matrix_to_rot6d(eye.expand(n, 3, 3)).clone()
        cam = torch.tensor([[0.0, 0.0, math.log(5.0)]], device=dev).repeat(n, 1)
        if init is not None:
            if init.batch_size != n:
                raise ValueError(f"init has {init.batch_size} people; expected {n} (one per fitted person)")
            init = init.detach().to(dev)
            orient = matrix_to_rot6d(init.global_orient[:, 0].float()).clone()
            body_pose = matrix_to_axis_angle(init.body_pose.float()).clone()
            if body_pose.shape[1] != self.num_joints - 1:
                raise ValueError(f"init.body_pose has {body_pose.shape[1]} joints; the body model needs "
                                 f"{self.num_joints - 1}")  # fmt: skip
            if init.body_model and init.body_model != self.body_model.name:
                warnings.warn(
                    f"init comes from body model {init.body_model!r}, fitting {self.body_model.name!r}: "
                    "its pose is used, its shape is not",
                    stacklevel=3,
                )
            else:
                s = min(self.num_betas, init.betas.shape[1])
                b = init.betas.float().reshape(t.frames, t.people, -1)[..., :s].mean(0)
                betas[:, :s] = b
            if init.cam_t_full is not None:
                cam = _cam_from_transl(init.cam_t_full.float())
        self.prior.project_(body_pose)
        if init is not None and anchor:
            t.pose_anchor = body_pose.clone()
        return _Params(orient, body_pose, betas, cam)

    # ---------------------------------------------------------------------------------- model & loss
    def forward(self, p: _Params, t: _Targets) -> tuple[torch.Tensor, torch.Tensor]:
        rot = torch.cat([rot6d_to_matrix(p.orient)[:, None], axis_angle_to_matrix(p.body_pose)], dim=1)
        betas = p.betas.repeat(t.frames, 1)
        return self.model(rot, betas, p.transl())

    def terms(self, p: _Params, t: _Targets, stage: StageConfig | None, conf: torch.Tensor):
        """Per keypoint data terms (N, K), per body joint prior terms (N, J-1) and the shared terms (scalar)."""
        cfg = self.cfg
        kp, joints = self.forward(p, t)
        proj = t.camera.project(kp)
        r2 = ((proj - t.kp2d) / t.scale[:, None, None]).pow(2).sum(-1)
        data = cfg.keypoint_weight * conf * geman_mcclure(r2, cfg.robust_sigma)
        if t.kp3d is not None:
            data = data + cfg.keypoint_3d_weight * self._loss_3d(kp, t, conf > 0)
        if stage is None:
            return data, None, data.new_zeros(())
        prior = cfg.limit_weight * self.prior.limit_penalty(p.body_pose)
        prior = prior + cfg.bending_weight * self.prior.bending_penalty(p.body_pose)
        prior = prior + stage.prior_scale * cfg.pose_weight * self.prior.regulariser(p.body_pose, t.pose_anchor)
        shared = stage.prior_scale * cfg.shape_weight * shape_regulariser(p.betas).sum()
        temporal_weight = self._temporal_weight(t)
        if temporal_weight > 0:
            shared = shared + temporal_weight * self._temporal(joints, t)
        return data, prior, shared

    def loss(self, p: _Params, t: _Targets, stage: StageConfig | None, conf: torch.Tensor) -> torch.Tensor:
        data, prior, shared = self.terms(p, t, stage, conf)
        return data.sum() + shared + (0 if prior is None else prior.sum())

    def _loss_3d(self, kp: torch.Tensor, t: _Targets, mask: torch.Tensor) -> torch.Tensor:
        w = t.conf3d * mask
        if self.cfg.keypoint_3d_alignment == "similarity":
            aligned = procrustes_align(kp, t.kp3d, w + 1e-6)
        else:
            wn = (w / w.sum(-1, keepdim=True).clamp_min(1e-9))[..., None]
            aligned = kp - (wn * kp).sum(1, keepdim=True) + (wn * t.kp3d).sum(1, keepdim=True)
        return w * (aligned - t.kp3d).pow(2).sum(-1)

    def _temporal_weight(self, t: _Targets) -> float:
        return self.cfg.online_temporal_weight if t.joint_prediction is not None else self.cfg.temporal_weight

    @staticmethod
    def _temporal(joints: torch.Tensor, t: _Targets) -> torch.Tensor:
        if t.joint_prediction is not None:
            return (joints - t.joint_prediction).pow(2).sum()
        if t.frames < 3:
            return joints.new_zeros(())
        j = joints.reshape(t.frames, t.people, -1, 3)
        return (j[2:] - 2 * j[1:-1] + j[:-2]).pow(2).sum()

    # ------------------------------------------------------------------------------------ stages
    @torch.no_grad()
    def _initial_camera(self, p: _Params, t: _Targets, keep_orient: bool, h: int) -> _Params:
        """Depth from torso length and focal; orientation from the image's roll and the ``h`` best of the yaw
        hypotheses (or ``p.orient`` when ``keep_orient``); translation puts the torso on its keypoints.
        Returns ``h`` hypotheses per person (see :meth:`_Targets.repeat`)."""
        n = len(p.orient)
        eye = torch.eye(3, device=self.device).expand(n, 1, 3, 3)
        kp, _ = self.model(torch.cat([eye, axis_angle_to_matrix(p.body_pose)], 1), p.betas.repeat(t.frames, 1))
        tor_conf = t.conf[:, self.torso]
        has = tor_conf > 0
        obs, model = t.kp2d[:, self.torso], kp[:, self.torso]
        ls, rs, lh, rh = range(4)
        up = _mean_pair(obs, has, (ls, rs)) - _mean_pair(obs, has, (lh, rh))
        # Shoulder-to-hip lengths barely change with yaw, so their ratio gives the depth.
        pair_ok = torch.stack([has[:, ls] & has[:, lh], has[:, rs] & has[:, rh]], -1).float()
        len2d = torch.stack([(obs[:, ls] - obs[:, lh]).norm(dim=-1), (obs[:, rs] - obs[:, rh]).norm(dim=-1)], -1)
        len3d = torch.stack([(model[:, ls] - model[:, lh]).norm(dim=-1), (model[:, rs] - model[:, rh]).norm(dim=-1)], -1)  # fmt: skip
        size3d = (model - model.mean(1, keepdim=True)).norm(dim=-1).amax(-1)
        size2d = ((obs - _mean_pair(obs, has, tuple(range(4)))[:, None]).norm(dim=-1) * has).amax(-1)
        ratio = torch.where(
            pair_ok.sum(-1) > 0,
            (len3d * pair_ok).sum(-1) / (len2d * pair_ok).sum(-1).clamp_min(1e-6),
            size3d / size2d.clamp_min(1e-6),
        )
        depth = t.camera.focal_length.mean(-1) * ratio
        c2d = (obs * tor_conf[..., None]).sum(1) / tor_conf.sum(1, keepdim=True)
        ray = (c2d - t.camera.principal_point) / t.camera.focal_length
        target = torch.cat([ray * depth[:, None], depth[:, None]], -1)
        centre = (model * tor_conf[..., None]).sum(1) / tor_conf.sum(1, keepdim=True)
        if keep_orient:
            hyps = rot6d_to_matrix(p.orient)[None]
        else:
            roll = torch.where(up.norm(dim=-1) > 0, torch.atan2(up[:, 0], -up[:, 1]), torch.zeros_like(depth))
            upright = torch.diag(torch.tensor([1.0, -1.0, -1.0], device=self.device))
            k = self.cfg.yaw_hypotheses
            hyps = torch.stack(
                [_rot_z(roll) @ upright @ _rot_y(torch.full_like(roll, 2 * math.pi * i / k)) for i in range(k)]
            )
        transl = target - (hyps @ centre[..., None])[..., 0]  # (H, N, 3)
        pts = model @ hyps.transpose(-1, -2) + transl[:, :, None]
        f, c = t.camera.focal_length, t.camera.principal_point
        proj = perspective_projection(pts.flatten(0, 1), None, f.repeat(len(hyps), 1), c.repeat(len(hyps), 1))
        err = (tor_conf * (proj.view(len(hyps), n, -1, 2) - obs).pow(2).sum(-1)).sum(-1)  # (H, N)
        # Best yaws that are not neighbours of a better one (a local minimum each).
        pick = []
        for _ in range(min(h, len(hyps))):
            i = err.argmin(0)
            pick.append(i)
            for d in (-1, 0, 1):
                err[(i + d) % len(hyps), torch.arange(n, device=self.device)] = math.inf
        while len(pick) < h:
            pick.append(pick[0])
        idx = torch.stack(pick, -1)  # (N, h)
        cols = torch.arange(n, device=self.device)[:, None]
        rot, tr = hyps[idx, cols].flatten(0, 1), transl[idx, cols].flatten(0, 1)
        out = p.repeat(t.frames, t.people, h)
        out.orient, out.cam = matrix_to_rot6d(rot), _cam_from_transl(tr)
        return out

    def fit_camera(self, p: _Params, t: _Targets, keep_orient: bool = False, h: int = 1) -> _Params:
        p = self._initial_camera(p, t, keep_orient, h)
        th = t.repeat(h) if h > 1 else t
        mask = torch.zeros_like(th.conf)
        mask[:, self.torso] = th.conf[:, self.torso]
        self._optimise(p, th, self.cfg.camera_stage, mask, (p.orient, p.cam), None)
        return p

    def run_stage(self, p: _Params, t: _Targets, stage: StageConfig, near: bool = False) -> None:
        """``near``: the fit starts close to its solution (an init, a previous frame), see :meth:`_optimise`."""
        free = [p.orient, p.cam, p.body_pose] + ([p.betas] if stage.shape else [])
        self._optimise(p, t, stage, t.conf, free, stage, near)

    @torch.no_grad()
    def reprojection_error(self, p: _Params, t: _Targets) -> torch.Tensor:
        """(N,) confidence-weighted mean keypoint distance in units of each person's 2D size."""
        kp, _ = self.forward(p, t)
        r = (t.camera.project(kp) - t.kp2d).norm(dim=-1) / t.scale[:, None]
        return (r * t.conf).sum(-1) / t.conf.sum(-1).clamp_min(1e-9)

    def solve(self, p: _Params, t: _Targets, start: MeshOutput | None, stages: tuple[StageConfig, ...],
              flips: bool = False) -> _Params:  # fmt: skip
        """Cold fit, or ``stages`` from ``start`` (camera estimated first if it has none), each after a limb
        flip search when ``flips``."""
        if start is None:
            return self.fit_cold(p, t)
        if start.cam_t_full is None:
            p = self.fit_camera(p, t, keep_orient=True)
        for stage in stages:
            if flips and self.cfg.flip_search and self.limbs:
                p = self._flip_search(p, t, stage)
            self.run_stage(p, t, stage, near=True)
        return p

    def fit_cold(self, p: _Params, t: _Targets) -> _Params:
        """From the mean pose: camera hypotheses, carried through the first ``orientation_stages`` stages (pose
        stages, then final stages; the first only with 3D keypoints), after which each person keeps their
        cheapest; every stage after the first follows a limb flip search."""
        cfg, h = self.cfg, max(1, self.cfg.orientation_hypotheses)
        p = self.fit_camera(p, t, h=h)
        th = t.repeat(h) if h > 1 else t
        stages = (*cfg.pose_stages, *cfg.final_stages)
        # With 3D keypoints the first stage already tells the orientations apart (same accuracy, 2/3 the time).
        keep = min(max(1, cfg.orientation_stages) if t.kp3d is None else 1, len(stages))
        for i, stage in enumerate(stages):
            if i > 0 and cfg.flip_search and self.limbs:
                p = self._flip_search(p, th, stage)
            self.run_stage(p, th, stage)
            if h > 1 and i + 1 == keep:
                p = p.choose(t.frames, t.people, h, self.person_cost(p, th, stage).view(t.people, h).argmin(-1))
                th, h = t, 1
        return p

    def person_cost(self, p: _Params, t: _Targets, stage: StageConfig) -> torch.Tensor:
        """(P,) each person's share of the loss under ``stage``'s weights, summed over their frames."""
        with torch.no_grad():
            data, prior, _ = self.terms(p, t, stage, t.conf)
        cost = (data.sum(-1) + prior.sum(-1)).view(t.frames, t.people).sum(0)
        return cost + stage.prior_scale * self.cfg.shape_weight * shape_regulariser(p.betas)

    def _flip_search(self, p: _Params, t: _Targets, stage: StageConfig) -> _Params:
        """Each limb's elbow/knee and wrist/ankle lie on their keypoints' camera rays, each at one of the two
        depths where the ray meets the bone's length (2D keypoints cannot tell them apart). The 4 depth choices
        are set by inverse kinematics (a pure hinge at the elbow/knee) and each limb keeps the one with the
        lowest cost (its keypoints' data terms plus its joints' priors, weighted as in ``stage``)."""
        h = 4
        ph, th = p.repeat(t.frames, t.people, h), t.repeat(h)
        which = torch.arange(th.frames * th.people, device=self.device) % h  # hypothesis of each row
        with torch.no_grad():
            self._lift_limbs(ph, th, which)
            self.prior.project_(ph.body_pose)
        for st in self.cfg.flip_stages:
            self.run_stage(ph, th, st)
        with torch.no_grad():
            select = dataclasses.replace(stage, prior_scale=self.cfg.flip_select_prior_scale)
            data, prior, _ = self.terms(ph, th, select, th.conf)
        base = p
        for limb in self.limbs:
            cost = data[:, limb["keypoints"]].sum(-1) + prior[:, limb["joints"]].sum(-1)
            chosen = ph.choose(t.frames, t.people, h, cost.view(t.frames, t.people, h).sum(0).argmin(-1))
            base.body_pose[:, limb["joints"]] = chosen.body_pose[:, limb["joints"]]
        return base

    def _lift_limbs(self, p: _Params, t: _Targets, which: torch.Tensor) -> None:
        """Set each limb's root and hinge rotations so its joints hit their 2D keypoints at the depths chosen by
        bit 0 (middle joint) and bit 1 (end joint) of ``which`` (set = the farther solution)."""
        rot = torch.cat([rot6d_to_matrix(p.orient)[:, None], axis_angle_to_matrix(p.body_pose)], dim=1)
        rest = self.model.rest_joints(p.betas.repeat(t.frames, 1))
        world, pos = forward_kinematics(rot, rest, self.model.parents, self.model.levels)
        pos = pos + p.transl()[:, None]
        normalize = torch.nn.functional.normalize
        for limb in self.limbs:
            (root, mid), (_, end) = limb["bones"]
            k_mid, k_end = limb["keypoints_2d"]
            ok = (t.conf[:, k_mid] > 0) & (t.conf[:, k_end] > 0)
            len1 = (rest[:, mid] - rest[:, root]).norm(dim=-1)
            len2 = (rest[:, end] - rest[:, mid]).norm(dim=-1)
            p1 = _on_ray(pos[:, root], len1, t.kp2d[:, k_mid], t.camera, (which & 1) > 0)
            p2 = _on_ray(p1, len2, t.kp2d[:, k_end], t.camera, (which & 2) > 0)
            u1, u2 = normalize(p1 - pos[:, root], dim=-1), normalize(p2 - p1, dim=-1)
            a0 = limb["hinge_axis"].to(u1)
            n = torch.cross(u1, u2, dim=-1)
            # A straight limb keeps its current hinge axis (made perpendicular to the new bone).
            n_cur = world[:, mid] @ a0
            n_cur = n_cur - (n_cur * u1).sum(-1, keepdim=True) * u1
            n = normalize(torch.where(n.norm(dim=-1, keepdim=True) < 1e-4, n_cur, n), dim=-1)
            d0 = normalize(rest[:, mid] - rest[:, root], dim=-1)
            d0 = normalize(d0 - (d0 * a0).sum(-1, keepdim=True) * a0, dim=-1)
            a0e = a0.expand_as(d0)
            frame_world = torch.stack([u1, n, torch.cross(u1, n, dim=-1)], -1)
            frame_rest = torch.stack([d0, a0e, torch.cross(d0, a0e, dim=-1)], -1)
            root_world = frame_world @ frame_rest.transpose(-1, -2)
            # The rest bone is not exactly perpendicular to the hinge axis: turn it exactly onto u1.
            bone = root_world @ normalize(rest[:, mid] - rest[:, root], dim=-1)[..., None]
            root_world = _rotation_between(bone[..., 0], u1) @ root_world
            local = world[:, self.model.parents[root]].transpose(-1, -2) @ root_world
            # Hinge angle turning the rest lower bone onto u2 (both seen in the plane normal to the hinge axis).
            e2 = rest[:, end] - rest[:, mid]
            t2 = (root_world.transpose(-1, -2) @ u2[..., None])[..., 0]
            e2, t2 = e2 - (e2 @ a0)[:, None] * a0, t2 - (t2 @ a0)[:, None] * a0
            flex = torch.atan2(torch.cross(e2, t2, dim=-1) @ a0, (e2 * t2).sum(-1))
            p.body_pose[ok, root - 1] = matrix_to_axis_angle(local[ok])
            p.body_pose[ok, mid - 1] = (a0 * flex[:, None])[ok]

    def _optimise(self, p, t, stage: StageConfig, conf, free, prior_stage, near: bool = False) -> None:
        # Levenberg-Marquardt for single frames. With 3D keypoints only ``near`` a solution: in cold fits it
        # converged far more slowly than Adam after the limb flip search (the similarity alignment is held fixed
        # in its Jacobian); from a previous frame it is faster and closer (synthetic clips: 8 mm against 16 mm).
        # Video batches couple frames (shared shape, temporal term): Adam.
        lm_3d = t.kp3d is None or near
        if self.cfg.solver == "lm" and t.frames == 1 and lm_3d and stage.lm_iterations > 0:
            return self._levenberg_marquardt(p, t, stage.lm_iterations, conf, free, prior_stage)
        if stage.iterations <= 0:
            return
        scales = {id(p.orient): 1.0, id(p.body_pose): 1.0, id(p.betas): 2.0, id(p.cam): 0.3}
        lrs = [stage.lr * scales[id(x)] for x in free]
        # Adam (betas 0.9, 0.99) written out: torch.optim's first step imports torch._dynamo, ~1.5 s once per
        # process, which a video's first warm frame or a one-off fit would pay.
        b1, b2 = 0.9, 0.99
        m = [torch.zeros_like(x) for x in free]
        v = [torch.zeros_like(x) for x in free]
        for x in free:
            x.requires_grad_(True)
        for it in range(stage.iterations):
            decay = 0.1 + 0.45 * (1 + math.cos(math.pi * it / stage.iterations))
            grads = torch.autograd.grad(self.loss(p, t, prior_stage, conf), free)
            with torch.no_grad():
                for x, g, m_, v_, lr in zip(free, grads, m, v, lrs, strict=True):
                    m_.mul_(b1).add_(g, alpha=1 - b1)
                    v_.mul_(b2).addcmul_(g, g, value=1 - b2)
                    denom = (v_ / (1 - b2 ** (it + 1))).sqrt_().add_(1e-8)
                    x.addcdiv_(m_, denom, value=-lr * decay / (1 - b1 ** (it + 1)))
                p.betas.clamp_(-self.cfg.max_abs_beta, self.cfg.max_abs_beta)
                if prior_stage is not None:
                    self.prior.project_(p.body_pose)
        for x in free:
            x.requires_grad_(False)

    def _normal_equations(self, x: torch.Tensor, rot0: torch.Tensor, t: _Targets, stage: StageConfig | None,
                          conf: torch.Tensor, free: torch.Tensor):  # fmt: skip
        """Gauss-Newton terms at the packed parameters ``x`` (N, 3 + 3(J-1) + S + 3): a root rotation increment
        (applied after ``rot0``; zero here), body pose, betas and camera. Returns each person's cost (N,), the
        same as :meth:`terms` (single frame, 2D), and J^T J (N, F, F) and J^T r (N, F) over the ``free`` columns,
        from the analytic Jacobian of the residuals (a Geman-McClure term as ``s r / sqrt(s^2 + |r|^2)``)."""
        cfg, nb, nk, ns = self.cfg, self.num_joints - 1, len(self.names), self.num_betas
        n = len(x)
        _, pose, betas, cam = x.split([3, 3 * nb, ns, 3], 1)
        z = cam[:, 2:].exp()
        transl = torch.cat([cam[:, :2] * z, z], -1)
        rot = torch.cat([rot0[:, None], axis_angle_to_matrix(pose.view(n, nb, 3))], 1)
        temporal_weight = self._temporal_weight(t) if stage is not None and t.joint_prediction is not None else 0.0
        temporal = temporal_weight > 0
        pts, d = self.model.linearise(rot, betas, transl, with_joints=temporal)
        # Chain rule to the packed parameters: body joints' increments -> their axis-angle, translation -> camera.
        d_pose = torch.einsum("nrxki,nkij->nrxkj", d[..., 3 : 3 + 3 * nb].unflatten(-1, (nb, 3)),
                              so3_right_jacobian(pose.view(n, nb, 3))).flatten(-2)  # fmt: skip
        zero = torch.zeros_like(z)
        d_transl = torch.stack([torch.cat([z, zero, zero], -1), torch.cat([zero, z, zero], -1), transl], -1)
        jac = torch.cat([d[..., :3], d_pose, d[..., 3 + 3 * nb : -3], d[..., -3:] @ d_transl[:, None]], -1)
        jac = jac[..., free]  # (N, K+J, 3, F)

        kp, jk = pts[:, :nk], jac[:, :nk]
        depth = kp[..., 2]
        f, c = t.camera.focal_length, t.camera.principal_point
        plane = kp[..., :2] / depth[..., None]
        inv_scale = 1 / t.scale[:, None, None]
        r = (f[:, None] * plane + c[:, None] - t.kp2d) * inv_scale
        # d(pixel)/d(point) = f/Z [[1, 0, -X/Z], [0, 1, -Y/Z]]
        dr = (f[:, None] * inv_scale / depth[..., None])[..., None] * (jk[:, :, :2] - plane[..., None] * jk[:, :, 2:])
        s = cfg.robust_sigma
        rho2 = s * s + r.pow(2).sum(-1, keepdim=True)
        w = (cfg.keypoint_weight * conf)[..., None].sqrt() * s / rho2.sqrt()
        res = w * r
        dres = w[..., None] * (dr - r[..., None] * (r[..., None] * dr).sum(-2, keepdim=True) / rho2[..., None])
        res, dres = res.flatten(1), dres.flatten(1, 2)
        if t.kp3d is not None:
            # The alignment is held at its optimum: by the envelope theorem J^T r is still the exact gradient.
            w3 = t.conf3d * (conf > 0)
            if cfg.keypoint_3d_alignment == "similarity":
                scale, rot_a, shift = procrustes_transform(kp, t.kp3d, w3 + 1e-6)
                aligned = scale[:, None, None] * kp @ rot_a.transpose(1, 2) + shift[:, None]
                d_aligned = scale[:, None, None, None] * (rot_a[:, None] @ jk)
            else:
                wn = (w3 / w3.sum(-1, keepdim=True).clamp_min(1e-9))[..., None]
                aligned = kp - (wn * kp).sum(1, keepdim=True) + (wn * t.kp3d).sum(1, keepdim=True)
                d_aligned = jk - (wn[..., None] * jk).sum(1, keepdim=True)
            w3 = (cfg.keypoint_3d_weight * w3)[..., None].sqrt()
            res = torch.cat([res, (w3 * (aligned - t.kp3d)).flatten(1)], 1)
            dres = torch.cat([dres, (w3[..., None] * d_aligned).flatten(1, 2)], 1)
        cost = res.pow(2).sum(-1)
        jtj = dres.transpose(1, 2) @ dres
        g = (dres.transpose(1, 2) @ res[..., None])[..., 0]
        if stage is not None:
            if temporal:
                rt = math.sqrt(temporal_weight) * (pts[:, nk:] - t.joint_prediction).flatten(1)
                jt = math.sqrt(temporal_weight) * jac[:, nk:].flatten(1, 2)
                cost = cost + rt.pow(2).sum(-1)
                jtj = jtj + jt.transpose(1, 2) @ jt
                g = g + (jt.transpose(1, 2) @ rt[..., None])[..., 0]
            # Priors: residuals on single parameters, so diagonal terms. Pose: limits, bending, regulariser.
            pr, pose = self.prior, pose.view(n, nb, 3)
            anchor = pr.mean_pose if t.pose_anchor is None else t.pose_anchor
            over, under = pose > pr.upper, pose < pr.lower
            backwards = (pose * pr.hinge_sign) < 0
            reg = (stage.prior_scale * cfg.pose_weight * pr.reg_weights).sqrt().expand_as(pose)
            terms = [
                (math.sqrt(cfg.limit_weight) * (torch.relu(pose - pr.upper) + torch.relu(pr.lower - pose)),
                 math.sqrt(cfg.limit_weight) * (over.to(pose.dtype) - under.to(pose.dtype))),
                (math.sqrt(cfg.bending_weight) * torch.relu(-pose * pr.hinge_sign),
                 -math.sqrt(cfg.bending_weight) * pr.hinge_sign * backwards),
                (reg * (pose - anchor), reg),
            ]  # fmt: skip
            shape_w = math.sqrt(stage.prior_scale * cfg.shape_weight)
            diag_r = x.new_zeros(n, len(free))
            diag_d = x.new_zeros(n, len(free))
            diag_r2 = x.new_zeros(n)
            for res_p, der_p in terms:
                diag_r2 = diag_r2 + res_p.pow(2).flatten(1).sum(-1)
                diag_d[:, 3 : 3 + 3 * nb] += der_p.flatten(1).expand(n, -1) ** 2
                diag_r[:, 3 : 3 + 3 * nb] += (der_p * res_p).flatten(1)
            diag_r2 = diag_r2 + (shape_w * betas).pow(2).sum(-1)
            diag_d[:, 3 + 3 * nb : 3 + 3 * nb + ns] += shape_w**2
            diag_r[:, 3 + 3 * nb : 3 + 3 * nb + ns] += shape_w**2 * betas
            cost = cost + diag_r2
            jtj = jtj + torch.diag_embed(diag_d[:, free])
            g = g + diag_r[:, free]
        return cost, jtj, g

    def _levenberg_marquardt(self, p: _Params, t: _Targets, iterations: int, conf, free, prior_stage) -> None:
        """Damped Gauss-Newton on each person's own parameters (single frame), one small solve per person. A
        step is kept where it lowers that person's cost (the damping then shrinks), else the damping grows."""
        cfg, n, nb = self.cfg, len(p.orient), self.num_joints - 1
        sizes = [3, 3 * nb, self.num_betas, 3]
        ids = [id(p.orient), id(p.body_pose), id(p.betas), id(p.cam)]
        free_ids = {id(x) for x in free}
        mask = torch.cat([torch.full((k,), i in free_ids, device=self.device) for k, i in zip(sizes, ids, strict=True)])  # fmt: skip
        equations = functools.partial(self._normal_equations, t=t, stage=prior_stage, conf=conf, free=mask)
        rot0 = rot6d_to_matrix(p.orient)
        x = torch.cat([torch.zeros(n, 3, device=self.device), p.body_pose.flatten(1), p.betas, p.cam], 1)
        with torch.no_grad():
            cost, jtj, g = equations(x, rot0)
        damping = torch.full((n,), cfg.lm_damping, device=self.device)
        flat = torch.zeros(n, dtype=torch.long, device=self.device)
        for _ in range(iterations):
            with torch.no_grad():
                diag = torch.diagonal(jtj, dim1=-2, dim2=-1)
                # Marquardt scaling with a floor, so that directions the data barely constrain (limb twists
                # under weak priors) are damped too, and a trust region on the largest component: without
                # them Gauss-Newton's long steps jump to distant, worse minima.
                floor = diag.mean(-1, keepdim=True) * cfg.lm_damping_floor
                a = jtj + damping[:, None, None] * torch.diag_embed(torch.maximum(diag, floor))
                dx = -torch.linalg.solve(a, g)
                dx = dx * (cfg.lm_max_step / dx.abs().amax(-1, keepdim=True).clamp_min(cfg.lm_max_step))
                new = x.clone()
                new[:, mask] += dx
                new[:, 3 + 3 * nb : 3 + 3 * nb + self.num_betas].clamp_(-cfg.max_abs_beta, cfg.max_abs_beta)
                if prior_stage is not None:
                    self.prior.project_(new[:, 3 : 3 + 3 * nb].view(n, nb, 3))
                new_rot = rot0 @ axis_angle_to_matrix(new[:, :3])
                new[:, :3] = 0
                # The candidate's normal equations come with its cost: kept for the next step if it is accepted.
                new_cost, new_jtj, new_g = equations(new, new_rot)
                ok = (new_cost < cost) & (flat < 2)
                gain = torch.where(ok, (cost - new_cost) / cost.clamp_min(1e-12), torch.zeros_like(cost))
                x = torch.where(ok[:, None], new, x)
                rot0 = torch.where(ok[:, None, None], new_rot, rot0)
                jtj = torch.where(ok[:, None, None], new_jtj, jtj)
                g = torch.where(ok[:, None], new_g, g)
                cost = torch.where(ok, new_cost, cost)
                damping = torch.where(ok, damping / 3, damping * 4).clamp(1e-7, 1e7)
                # A person has converged after two steps in a row that gained less than ``lm_tolerance`` of their
                # cost; they are left as they are (so a result does not depend on who else is in the batch), and
                # the loop ends when everyone has.
                flat = torch.where(gain < cfg.lm_tolerance, flat + 1, torch.zeros_like(flat))
                if bool((flat >= 2).all()):
                    break
        _, pose, betas, cam = x.split(sizes, 1)
        p.orient.copy_(matrix_to_rot6d(rot0))
        p.body_pose.copy_(pose.view(n, nb, 3))
        p.betas.copy_(betas)
        p.cam.copy_(cam)

    # ------------------------------------------------------------------------------------ output
    @torch.no_grad()
    def output(self, p: _Params, t: _Targets, init: MeshOutput | None) -> MeshOutput:
        go = rot6d_to_matrix(p.orient)[:, None]
        bp = axis_angle_to_matrix(p.body_pose)
        betas = p.betas.repeat(t.frames, 1)
        bm = self.body_model
        dt, dev = bm.v_template.dtype, bm.v_template.device
        full = bm(global_orient=go.to(dev, dt), body_pose=bp.to(dev, dt), betas=betas.to(dev, dt))
        kp, _ = self.model(torch.cat([go, bp], 1), betas)
        keep = self.available
        kp = kp[:, keep]
        transl = p.transl()
        out = MeshOutput(
            global_orient=go,
            body_pose=bp,
            betas=betas,
            vertices=full.vertices.to(self.device, torch.float32),
            keypoints_3d=kp,
            keypoint_names=tuple(n for n, a in zip(self.names, keep.tolist(), strict=True) if a),
            body_model=bm.name,
            cam_t_full=transl,
            focal_length=t.camera.focal_length,
            keypoints_2d_full=t.camera.project(kp, transl),
        )
        if init is not None and init.pred_cam is not None and init.cam_t_full is not None:
            _crop_fields(out, init.to(self.device), t.camera)
        return out


def _crop_fields(out: MeshOutput, init: MeshOutput, camera: Camera) -> None:
    """Re-derive the crop camera of ``init``'s box (implied by its crop and full-image cameras) for ``out``."""
    f_init = (init.focal_length if init.focal_length is not None else camera.focal_length).float().mean(-1)
    s, tx, ty = init.pred_cam.float().unbind(-1)
    t0 = init.cam_t_full.float()
    bs0 = 2 * f_init / t0[:, 2]
    box_size = bs0 / s
    half = camera.image_size / 2
    centre = half + (t0[:, :2] - torch.stack([tx, ty], -1)) * bs0[:, None] / 2
    t1 = out.cam_t_full
    bs1 = 2 * camera.focal_length.mean(-1) / t1[:, 2]
    txy = t1[:, :2] - 2 * (centre - half) / bs1[:, None]
    out.pred_cam = torch.cat([(bs1 / box_size)[:, None], txy], -1)
    out.pred_cam_t = torch.cat([txy, (2 * HMR2_FOCAL_LENGTH / (HMR2_CROP_SIZE * out.pred_cam[:, :1]))], -1)
    focal = torch.full((len(t1),), HMR2_FOCAL_LENGTH / HMR2_CROP_SIZE, device=t1.device)
    out.keypoints_2d = perspective_projection(out.keypoints_3d, out.pred_cam_t, focal)


_LIMB_CHAINS = (("left_shoulder", "left_elbow", "left_wrist"), ("right_shoulder", "right_elbow", "right_wrist"),
                ("left_hip", "left_knee", "left_ankle"), ("right_hip", "right_knee", "right_ankle"))  # fmt: skip


def _limbs(body_model: BodyModel, kp: KeypointSet) -> list[dict]:
    """Per limb: its two bones (joint index pairs), its body_pose joints and the keypoints it moves."""
    nj = body_model.num_joints
    weights = body_model.weights.cpu().numpy()
    anc = ancestor_matrix(body_model.parents)

    def ancestors(j: int) -> set[int]:
        return set(np.flatnonzero(anc[j]).tolist())

    # Joints whose rotation moves each keypoint most: a joint keypoint's strict ancestors, a vertex keypoint's
    # main skinning joint and its ancestors.
    moved_by = [set() for _ in range(kp.num)]
    for r, c in zip(kp.rows.tolist(), kp.cols.tolist(), strict=True):
        moved_by[r] |= ancestors(c) - {c} if c < nj else ancestors(int(np.argmax(weights[c - nj])))
    limbs = []
    for chain in _LIMB_CHAINS:
        root, mid, end = (SMPL_JOINT_NAMES.index(n) for n in chain)
        subtree = [j for j in range(1, nj) if anc[j, root]]
        hinge = next((axis, sign) for name, axis, sign in HINGES if name == chain[1])
        limbs.append({
            "bones": ((root, mid), (mid, end)),
            "joints": [j - 1 for j in subtree],
            "keypoints": [k for k in range(kp.num) if root in moved_by[k]],
            "keypoints_2d": (kp.names.index(chain[1]), kp.names.index(chain[2])),
            "hinge_axis": torch.eye(3)[hinge[0]] * hinge[1],
        })  # fmt: skip
    return limbs


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) smallest rotations taking unit vectors ``a`` onto ``b``."""
    axis = torch.cross(a, b, dim=-1)
    angle = torch.atan2(axis.norm(dim=-1), (a * b).sum(-1))
    return axis_angle_to_matrix(torch.nn.functional.normalize(axis, dim=-1) * angle[:, None])


def _on_ray(origin: torch.Tensor, length: torch.Tensor, pixel: torch.Tensor, camera: Camera,
            far: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The point on ``pixel``'s camera ray at ``length`` from ``origin`` (the nearer or, where ``far``, the
    farther of the two; the closest point of the ray where the ray misses the sphere)."""
    ray = torch.nn.functional.normalize(
        torch.cat([(pixel - camera.principal_point) / camera.focal_length, torch.ones_like(pixel[:, :1])], -1), dim=-1
    )
    b = (ray * origin).sum(-1)
    disc = (b * b - origin.pow(2).sum(-1) + length * length).clamp_min(0).sqrt()
    return (b + torch.where(far, disc, -disc))[:, None] * ray


def _expand_camera(camera: Camera, frames: int, people: int) -> Camera:
    b = camera.batch_size
    if b == frames * people:
        return camera
    if b == 1:
        reps = frames * people
        return Camera(*(x.expand(reps, -1) for x in (camera.focal_length, camera.principal_point, camera.image_size)))
    if b == people:
        return Camera(*(x.repeat(frames, 1) for x in (camera.focal_length, camera.principal_point, camera.image_size)))
    raise ValueError(f"camera has batch {b}; expected 1, {people} (people) or {frames * people} (frames x people)")


def _mean_pair(x: torch.Tensor, has: torch.Tensor, idx: tuple[int, ...]) -> torch.Tensor:
    w = has[:, list(idx)].float()[..., None]
    return (x[:, list(idx)] * w).sum(1) / w.sum(1).clamp_min(1)


def _rot_z(a: torch.Tensor) -> torch.Tensor:
    c, s, z, o = a.cos(), a.sin(), torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(-1, 3, 3)


def _rot_y(a: torch.Tensor) -> torch.Tensor:
    c, s, z, o = a.cos(), a.sin(), torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(-1, 3, 3)
