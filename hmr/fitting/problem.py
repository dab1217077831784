"""The fitting objective: targets, parameterisation, data terms, priors, and its residuals for Levenberg-Marquardt.

A person's parameters (:class:`Params`) are a 6D global orientation, axis-angle body pose, betas (shared by
a person's frames) and the translation as (x/z, y/z, log z). An :class:`Objective` says what one stage
minimises: the robust reprojection term (residuals in units of the person's 2D size), the optional 3D
keypoint term, and unless it is the camera stage the priors of :mod:`hmr.fitting.priors`. :class:`Problem`
evaluates it as a loss (Adam) and, for single frames, as residuals with their analytic Jacobian (LM): the
prior terms come from the same :class:`hmr.fitting.priors.Penalty` objects in both.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import numpy as np
import torch

from hmr.body import BodyModel
from hmr.fitting.config import FitConfig, StageConfig
from hmr.fitting.keypoints import TORSO, reduced_model
from hmr.fitting.priors import Penalty, PosePrior, height_scale, shape_penalty, temporal_penalty
from hmr.fitting.reduced import ReducedBodyModel, SurfacePoints
from hmr.fitting.silhouette import (
    Silhouette,
    near_mask,
    outline_set,
    person_masks,
    silhouette_cost,
    silhouette_targets,
    torso_cut_at_bottom,
)
from hmr.geometry import (
    Camera,
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    procrustes_transform,
    rot6d_to_matrix,
    so3_right_jacobian,
)
from hmr.outputs import MeshOutput

PARAMS = ("orient", "body_pose", "betas", "cam")


def as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    return x


@dataclasses.dataclass
class Targets:
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
    observed: torch.Tensor | None = None  # (N, J) bool: a believed keypoint tells the joint's rotation
    silhouette: Silhouette | None = None  # person masks (single frames)

    def repeat(self, h: int) -> Targets:
        """The same targets for ``h`` hypotheses per person (person p becomes people p*h .. p*h+h-1)."""
        rep = functools.partial(repeat_people, frames=self.frames, people=self.people, h=h)
        cam = self.camera.map(rep)
        opt = {k: None if getattr(self, k) is None else rep(getattr(self, k)) for k in ("kp3d", "conf3d", "joint_prediction", "pose_anchor", "observed")}  # fmt: skip
        sil = None if self.silhouette is None else self.silhouette.map(rep)
        return Targets(rep(self.kp2d), rep(self.conf), rep(self.scale), cam, self.frames, self.people * h, **opt,
                       silhouette=sil)  # fmt: skip

    def subset(self, idx: torch.Tensor) -> Targets:
        """People ``idx`` of a single-frame target set, without the warm-start terms."""
        cam = self.camera[idx]
        opt = {k: None if getattr(self, k) is None else getattr(self, k)[idx] for k in ("kp3d", "conf3d", "observed")}
        sil = None if self.silhouette is None else self.silhouette.map(lambda x: x[idx])
        return Targets(self.kp2d[idx], self.conf[idx], self.scale[idx], cam, 1, len(idx), **opt, silhouette=sil)


@dataclasses.dataclass
class Params:
    orient: torch.Tensor  # (N, 6) 6D global orientation
    body_pose: torch.Tensor  # (N, J-1, 3) axis-angle
    betas: torch.Tensor  # (P, S), shared by a person's frames
    cam: torch.Tensor  # (N, 3) translation as (x/z, y/z, log z)

    def transl(self) -> torch.Tensor:
        z = self.cam[:, 2:].exp()
        return torch.cat([self.cam[:, :2] * z, z], dim=-1)

    def frame_betas(self, frames: int) -> torch.Tensor:
        """(N, S): each row's betas, its person's in every frame (no copy for one frame)."""
        return self.betas if frames == 1 else self.betas.repeat(frames, 1)

    def repeat(self, frames: int, people: int, h: int) -> Params:
        rep = functools.partial(repeat_people, frames=frames, people=people, h=h)
        return Params(rep(self.orient), rep(self.body_pose), self.betas.repeat_interleave(h, 0), rep(self.cam))

    def choose(self, frames: int, people: int, h: int, best: torch.Tensor) -> Params:
        """Keep hypothesis ``best`` (P,) of each person (one choice for all their frames)."""
        idx = (torch.arange(people, device=best.device) * h + best).repeat(frames)
        idx = idx + torch.arange(frames, device=best.device).repeat_interleave(people) * people * h
        return Params(self.orient[idx], self.body_pose[idx], self.betas[idx[:people]], self.cam[idx])


def repeat_people(x: torch.Tensor, frames: int, people: int, h: int) -> torch.Tensor:
    """(T*P, ...) frame-major -> (T*P*h, ...) with each person repeated h times."""
    return x.reshape(frames, people, *x.shape[1:]).repeat_interleave(h, 1).reshape(-1, *x.shape[1:])


def cam_from_transl(t: torch.Tensor) -> torch.Tensor:
    z = t[:, 2:].clamp_min(1e-3)
    return torch.cat([t[:, :2] / z, z.log()], dim=-1)


@dataclasses.dataclass
class Objective:
    """What one stage minimises: the data terms weighted by ``conf`` (N, K) and, unless ``priors`` is None (the
    camera stage), the priors weighted as in that stage; ``free``: the parameters it changes (names in PARAMS)."""

    targets: Targets
    conf: torch.Tensor
    priors: StageConfig | None
    free: tuple[str, ...] = PARAMS


def geman_mcclure(residual_sq: torch.Tensor, sigma: float) -> torch.Tensor:
    """Robust Geman-McClure penalty ``s^2 r^2 / (s^2 + r^2)`` of squared residuals."""
    s2 = sigma * sigma
    return s2 * residual_sq / (s2 + residual_sq)


class Problem:
    """The objective of fitting ``body_model`` to ``keypoint_format`` keypoints under ``cfg``, evaluated on
    ``device`` in ``dtype``; ``model`` is the :class:`hmr.fitting.reduced.ReducedBodyModel` of those keypoints
    (``names``, of which the body model can produce ``available``), ``limbs`` their limbs
    (:func:`hmr.fitting.keypoints.limbs`)."""

    def __init__(self, body_model: BodyModel, keypoint_format: str, cfg: FitConfig, device: torch.device,
                 dtype: torch.dtype = torch.float32):  # fmt: skip
        if not isinstance(body_model, BodyModel):
            raise ValueError(f"body_model must be an hmr.body.BodyModel, got {type(body_model).__name__}")
        if cfg.keypoint_3d_alignment not in ("similarity", "rigid", "translation"):
            raise ValueError(
                f"keypoint_3d_alignment is {cfg.keypoint_3d_alignment!r}; use 'similarity', 'rigid' or 'translation'"
            )
        self.cfg, self.device, self.dtype, self.body_model = cfg, device, dtype, body_model
        self.format = keypoint_format
        self.names, self.available, self.model, self.limbs, self.observation = reduced_model(
            body_model, keypoint_format, device, dtype
        )
        self.prior = PosePrior(body_model.joint_names, cfg.twist_weight).to(device, dtype)
        self.num_betas = min(cfg.num_betas, body_model.num_betas)
        self.beta_scale = height_scale(body_model.shapedirs, body_model.v_template, self.num_betas,
                                       cfg.height_prior).to(device, dtype)  # fmt: skip
        self.torso = torch.as_tensor([self.names.index(n) for n in TORSO], device=device)
        self.torso_mask = torch.zeros(len(self.names), dtype=torch.bool, device=device)
        self.torso_mask[self.torso] = True
        self.hip_keypoints = torch.zeros_like(self.torso_mask)
        self.hip_keypoints[self.torso[2:]] = True
        # keypoints the hips' rotations move: knees, ankles, feet
        hips = [body_model.joint_names.index(n) for n in ("left_hip", "right_hip") if n in body_model.joint_names]
        self.legs = self.observation["moves"][hips].any(0)
        self.num_joints = body_model.num_joints
        self._outline: SurfacePoints | None = None

    @property
    def outline(self) -> SurfacePoints:
        """Surface points for the silhouette term (built on first use)."""
        if self._outline is None:
            bm = self.body_model
            self._outline = SurfacePoints(bm, outline_set(bm)).to(device=self.device, dtype=self.dtype)
        return self._outline

    # -------------------------------------------------------------------------------------- inputs
    def targets(self, kp2d, conf, kp3d, camera: Camera, frames: int, people: int, masks=None,
                silhouette: bool = True) -> Targets:  # fmt: skip
        """Targets from the inputs of :func:`hmr.fitting.fit`; ``masks`` (N, H, W) person masks of one frame,
        also for the silhouette term unless ``silhouette`` is False (a warm start, whose LM stages leave it out,
        uses them only to judge keypoints)."""
        n, k = frames * people, len(self.names)
        dev, dt = self.device, self.dtype
        lead = tuple(kp2d.shape[:-2])
        if kp2d.shape[-2:] != (k, 2):
            raise ValueError(
                f"keypoints_2d has shape {tuple(kp2d.shape)}; expected (..., {k}, 2) for format {self.format!r}"
            )
        conf = as_tensor(conf, "confidences")
        if tuple(conf.shape) != lead + (k,):
            raise ValueError(f"confidences has shape {tuple(conf.shape)}; expected {lead + (k,)}")
        kp2d = kp2d.reshape(n, k, 2).to(dev, dt)
        conf = conf.reshape(n, k).to(dev, dt)
        if (conf < 0).any():
            raise ValueError("confidences must be >= 0")
        valid = torch.isfinite(kp2d).all(-1) & torch.isfinite(conf) & (conf > self.cfg.min_confidence)
        valid &= self.available
        # the person's size (the residuals' unit) from every keypoint given, before those not believed are dropped
        given, scale = valid, _person_size(kp2d, valid)
        sil, cut = None, torch.zeros(n, dtype=torch.bool, device=dev)
        if masks is not None and self.cfg.silhouette_weight > 0:
            if frames != 1:
                raise ValueError("masks are used for single-frame fits; a video batch (T, P, ...) takes none")
            masks = person_masks(masks, n)
            if silhouette:
                sil = silhouette_targets(masks, kp2d, valid, scale)
            # a keypoint off the person's mask is not on the person (a limb the detector invented), nor are legs
            # shown inside the picture of a person whose torso the bottom border cuts
            valid = valid & near_mask(masks, kp2d, self.cfg.silhouette_margin * scale)
            width = 0.3 * scale  # a torso's width: its shoulders' or hips' distance, at least 30% of the body's size
            for a, b in ((0, 1), (2, 3)):
                ka, kb = self.torso[a], self.torso[b]
                pair = torch.where(valid[:, ka] & valid[:, kb], (kp2d[:, ka] - kp2d[:, kb]).norm(dim=-1), 0 * scale)
                width = torch.maximum(width, pair)
            cut = torso_cut_at_bottom(masks, width)
            valid = valid & ~(cut[:, None] & self.legs)
        valid, observed = self.believed(given, valid, conf)
        # the torso keypoints place the body: kept whenever given, except the hips of a torso the bottom border
        # cuts (they lie below the picture, wherever the detector puts them) when the shoulders remain
        keep = given & self.torso_mask
        shoulders = keep[:, self.torso[:2]].all(-1)
        valid = (valid | keep) & ~((cut & shoulders)[:, None] & self.hip_keypoints)
        conf = torch.where(valid, conf, torch.zeros_like(conf))
        kp2d = torch.where(valid[..., None], kp2d, torch.zeros_like(kp2d))
        if (valid[:, self.torso].sum(-1) < 2).any():
            bad = torch.nonzero(valid[:, self.torso].sum(-1) < 2)[:, 0].tolist()
            raise ValueError(
                f"people {bad[:10]} have fewer than 2 of the torso keypoints {list(TORSO)}; drop them or give "
                "an init with cam_t_full"
            )
        t = Targets(kp2d, conf, scale, _expand_camera(camera, frames, people).to(dev, dt), frames, people,
                    observed=observed, silhouette=sil)  # fmt: skip
        if kp3d is not None:
            kp3d = as_tensor(kp3d, "keypoints_3d")
            if tuple(kp3d.shape) != lead + (k, 3):
                raise ValueError(f"keypoints_3d has shape {tuple(kp3d.shape)}; expected {lead + (k, 3)} (metres)")
            kp3d = kp3d.reshape(n, k, 3).to(dev, dt)
            ok3 = torch.isfinite(kp3d).all(-1) & valid
            t.kp3d = torch.where(ok3[..., None], kp3d, torch.zeros_like(kp3d))
            t.conf3d = torch.where(ok3, conf, torch.zeros_like(conf))
        return t

    def believed(self, given: torch.Tensor, valid: torch.Tensor, conf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keypoints the fit uses (N, K) and the joints they observe (N, J), from the ``valid`` ones of those
        ``given`` (valid: not dropped by the mask).

        A keypoint is used when it is valid, its confidence reaches ``cfg.visible_confidence`` and the pivot
        keypoints of the joints that move it were not dropped (:func:`hmr.fitting.keypoints.observation_map`).
        A joint is observed when a used keypoint tells its rotation (the root always is); the others keep their
        start (the mean pose in a cold fit), as nothing in the image says where they are.
        """
        moves, support = self.observation["moves"], self.observation["support"]
        used = valid & (conf >= self.cfg.visible_confidence)
        dropped = (given & ~used).to(conf.dtype)
        used = used & ((dropped @ support.T.to(conf.dtype)) == 0)
        observed = (used.to(conf.dtype) @ moves.T.to(conf.dtype)) > 0
        observed[:, 0] = True
        return used, observed

    def initial_params(self, t: Targets, init: MeshOutput | None, anchor: bool = True) -> Params:
        """Parameters to start from: the mean pose, or ``init``; ``anchor``: the pose regulariser then pulls
        towards the init's pose (sets ``t.pose_anchor``)."""
        n, dev, dt = t.kp2d.shape[0], self.device, self.dtype
        eye = torch.eye(3, device=dev, dtype=dt)
        body_pose = self.prior.mean_pose.expand(n, -1, -1).clone()
        betas = torch.zeros(t.people, self.num_betas, device=dev, dtype=dt)
        orient = matrix_to_rot6d(eye.expand(n, 3, 3)).clone()
        cam = torch.tensor([[0.0, 0.0, math.log(5.0)]], device=dev, dtype=dt).repeat(n, 1)
        if init is not None:
            if init.batch_size != n:
                raise ValueError(f"init has {init.batch_size} people; expected {n} (one per fitted person)")
            init = init.detach().to(dev)
            orient = matrix_to_rot6d(init.global_orient[:, 0].to(dt)).clone()
            body_pose = matrix_to_axis_angle(init.body_pose.to(dt)).clone()
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
                b = init.betas.to(dt).reshape(t.frames, t.people, -1)[..., :s].mean(0)
                betas[:, :s] = b
            if init.cam_t_full is not None:
                cam = cam_from_transl(init.cam_t_full.to(dt))
        self.prior.project_(body_pose)
        if init is not None and anchor:
            t.pose_anchor = body_pose.clone()
        return Params(orient, body_pose, betas, cam)

    # ---------------------------------------------------------------------------------- model & loss
    @staticmethod
    def rotations(p: Params) -> torch.Tensor:
        """(N, J, 3, 3) local rotations: the root's from its 6D form, the body's from axis-angle."""
        return torch.cat([rot6d_to_matrix(p.orient)[:, None], axis_angle_to_matrix(p.body_pose)], dim=1)

    def forward(self, p: Params, t: Targets, model: ReducedBodyModel | SurfacePoints | None = None,
                rot: torch.Tensor | None = None, kinematics=None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """The keypoints (or ``model``'s points, e.g. :attr:`outline`) and joints with translation; ``rot`` and
        ``kinematics``: :meth:`rotations` of ``p`` and ``ReducedBodyModel.kinematics`` when already computed."""
        rot = self.rotations(p) if rot is None else rot
        return (self.model if model is None else model)(rot, p.frame_betas(t.frames), p.transl(), kinematics)

    def temporal_weight(self, t: Targets) -> float:
        return self.cfg.online_temporal_weight if t.joint_prediction is not None else self.cfg.temporal_weight

    def shape_weight(self, stage: StageConfig) -> float:
        """The shape regulariser's weight in ``stage``: annealed with the pose priors, but never below
        ``cfg.shape_prior_floor`` times ``cfg.shape_weight``."""
        return self.cfg.shape_weight * max(stage.prior_scale, self.cfg.shape_prior_floor)

    def penalties(self, body_pose: torch.Tensor, betas: torch.Tensor, joints: torch.Tensor | None, t: Targets,
                  stage: StageConfig) -> tuple[list[Penalty], Penalty, Penalty | None]:  # fmt: skip
        """The prior terms under ``stage``'s weights: on the body pose (limits, bending, regulariser; (N, J-1, 3)
        each), on the betas, and the temporal term on the ``joints`` (None without joints, when its weight is 0,
        or for fewer than 3 frames without a prediction)."""
        cfg = self.cfg
        pose = [
            self.prior.limits(body_pose, cfg.limit_weight),
            self.prior.bending(body_pose, cfg.bending_weight),
            self.prior.deviation(body_pose, t.pose_anchor, stage.prior_scale * cfg.pose_weight),
        ]
        if t.observed is not None and cfg.unseen_weight > 0 and not bool(t.observed.all()):
            unseen = (~t.observed[:, 1:, None]).to(body_pose.dtype)
            pose.append(self.prior.deviation(body_pose, t.pose_anchor, cfg.unseen_weight, unseen))
        shape = shape_penalty(betas, self.shape_weight(stage), self.beta_scale)
        w = self.temporal_weight(t)
        if joints is None or w <= 0:
            return pose, shape, None
        return pose, shape, temporal_penalty(joints, t.frames, t.people, t.joint_prediction, w)

    def terms(self, p: Params, obj: Objective):
        """Per keypoint data terms (N, K), per body joint prior terms (N, J-1) and the shared terms (scalar)."""
        cfg, t, conf = self.cfg, obj.targets, obj.conf
        rot = self.rotations(p)
        silhouette = t.silhouette is not None and obj.priors is not None and obj.priors.silhouette
        # the keypoints and the silhouette's surface points share one forward kinematics
        kin = self.model.kinematics(rot, p.frame_betas(t.frames)) if silhouette else None
        kp, joints = self.forward(p, t, rot=rot, kinematics=kin)
        proj = t.camera.project(kp)
        r2 = ((proj - t.kp2d) / t.scale[:, None, None]).pow(2).sum(-1)
        data = cfg.keypoint_weight * conf * geman_mcclure(r2, cfg.robust_sigma)
        if t.kp3d is not None:
            aligned, w3 = self._align_3d(kp, t, conf)
            data = data + cfg.keypoint_3d_weight * (w3 * (aligned - t.kp3d).pow(2).sum(-1))
        if obj.priors is None:
            return data, None, data.new_zeros(())
        if silhouette:
            # one more data column per person: a person's cost (hypothesis choice) includes it
            surface, _ = self.forward(p, t, self.outline, rot, kin)
            robust = functools.partial(geman_mcclure, sigma=cfg.silhouette_sigma)
            sil = silhouette_cost(t.camera.project(surface), t.silhouette, t.scale, robust, cfg.silhouette_margin,
                                  cfg.silhouette_cover)  # fmt: skip
            data = torch.cat([data, cfg.silhouette_weight * sil[:, None]], 1)
        pose, shape, temporal = self.penalties(p.body_pose, p.betas, joints, t, obj.priors)
        prior = pose[0].loss()
        for term in pose[1:]:
            prior = prior + term.loss()
        shared = shape.total()
        if temporal is not None:
            shared = shared + temporal.total()
        return data, prior, shared

    def loss(self, p: Params, obj: Objective) -> torch.Tensor:
        data, prior, shared = self.terms(p, obj)
        return data.sum() + shared + (0 if prior is None else prior.sum())

    def person_cost(self, p: Params, t: Targets, stage: StageConfig) -> torch.Tensor:
        """(P,) each person's share of the loss under ``stage``'s weights, summed over their frames."""
        with torch.no_grad():
            data, prior, _ = self.terms(p, Objective(t, t.conf, stage))
        cost = (data.sum(-1) + prior.sum(-1)).view(t.frames, t.people).sum(0)
        return cost + shape_penalty(p.betas, self.shape_weight(stage), self.beta_scale).loss()

    @torch.no_grad()
    def reprojection_error(self, p: Params, t: Targets) -> torch.Tensor:
        """(N,) confidence-weighted mean keypoint distance in units of each person's 2D size."""
        kp, _ = self.forward(p, t)
        r = (t.camera.project(kp) - t.kp2d).norm(dim=-1) / t.scale[:, None]
        return (r * t.conf).sum(-1) / t.conf.sum(-1).clamp_min(1e-9)

    def _align_3d(self, kp: torch.Tensor, t: Targets, conf: torch.Tensor, jk: torch.Tensor | None = None):
        """The model's keypoints aligned to ``t.kp3d`` as ``cfg.keypoint_3d_alignment`` says, the 3D weights
        (N, K) and, given the keypoints' Jacobian ``jk`` (N, K, 3, F), the aligned points' Jacobian with the
        alignment held at its optimum (translation: exact)."""
        w = t.conf3d * (conf > 0)
        if self.cfg.keypoint_3d_alignment in ("similarity", "rigid"):
            rigid = self.cfg.keypoint_3d_alignment == "rigid"
            # The alignment minimises the 3D term, so by the envelope theorem holding it fixed leaves the term's
            # gradient exact (to its weights' 1e-6): autograd through the SVD cost a tenth of an Adam step.
            with torch.no_grad():
                scale, rot, shift = procrustes_transform(kp, t.kp3d, w + 1e-6, with_scale=not rigid)
            aligned = scale[:, None, None] * kp @ rot.transpose(1, 2) + shift[:, None]
            d_aligned = None if jk is None else scale[:, None, None, None] * (rot[:, None] @ jk)
        else:
            wn = (w / w.sum(-1, keepdim=True).clamp_min(1e-9))[..., None]
            aligned = kp - (wn * kp).sum(1, keepdim=True) + (wn * t.kp3d).sum(1, keepdim=True)
            d_aligned = None if jk is None else jk - (wn[..., None] * jk).sum(1, keepdim=True)
        return (aligned, w) if jk is None else (aligned, w, d_aligned)

    @torch.no_grad()
    def constrain_(self, body_pose: torch.Tensor, betas: torch.Tensor, priors: bool) -> None:
        """After every step, in place: |betas| bounded; with the priors, no elbow or knee bent backwards."""
        betas.clamp_(-self.cfg.max_abs_beta, self.cfg.max_abs_beta)
        if priors:
            self.prior.project_(body_pose)

    # ------------------------------------------------------------------- Levenberg-Marquardt's view
    def _sizes(self) -> list[int]:
        return [3, 3 * (self.num_joints - 1), self.num_betas, 3]

    def pack(self, p: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-frame parameters as (x, rot0): x (N, 3 + 3(J-1) + S + 3) holds a root rotation increment
        (zero: applied after the anchor rotation ``rot0`` (N, 3, 3)), body pose, betas and camera."""
        increment = torch.zeros(len(p.orient), 3, device=self.device, dtype=self.dtype)
        return torch.cat([increment, p.body_pose.flatten(1), p.betas, p.cam], 1), rot6d_to_matrix(p.orient)

    def unpack_(self, x: torch.Tensor, rot0: torch.Tensor, p: Params) -> None:
        """Write packed parameters (increment already folded into ``rot0``) back into ``p``."""
        _, pose, betas, cam = x.split(self._sizes(), 1)
        p.orient.copy_(matrix_to_rot6d(rot0))
        p.body_pose.copy_(pose.view(p.body_pose.shape))
        p.betas.copy_(betas)
        p.cam.copy_(cam)

    def free_mask(self, free: tuple[str, ...]) -> torch.Tensor:
        """(F_all,) bool: the packed columns of the parameters named in ``free``."""
        return torch.cat([torch.full((k,), name in free, device=self.device) for k, name in zip(self._sizes(), PARAMS, strict=True)])  # fmt: skip

    def step(self, x: torch.Tensor, rot0: torch.Tensor, dx: torch.Tensor, mask: torch.Tensor, priors: bool):
        """The packed parameters after the step ``dx`` over the ``mask`` columns, constrained, with the root
        rotation increment folded into (re-anchored on) the new ``rot0`` and reset to zero."""
        _, nb, ns, _ = self._sizes()
        new = x.clone()
        new[:, mask] += dx
        self.constrain_(new[:, 3 : 3 + nb].view(len(x), -1, 3), new[:, 3 + nb : 3 + nb + ns], priors)
        new_rot = rot0 @ axis_angle_to_matrix(new[:, :3])
        new[:, :3] = 0
        return new, new_rot

    def normal_equations(self, x: torch.Tensor, rot0: torch.Tensor, obj: Objective, mask: torch.Tensor):
        """Gauss-Newton terms at the packed parameters ``x`` (see :meth:`pack`). Returns each person's cost
        (N,), the same as :meth:`loss` (single frame), and J^T J (N, F, F) and J^T r (N, F) over the ``mask``
        columns, from the analytic Jacobian of the residuals (a Geman-McClure term as ``s r / sqrt(s^2 + |r|^2)``;
        the priors' residuals from their :class:`Penalty`)."""
        cfg, t, conf, stage = self.cfg, obj.targets, obj.conf, obj.priors
        nb, nk, ns = self.num_joints - 1, len(self.names), self.num_betas
        n = len(x)
        _, pose, betas, cam = x.split(self._sizes(), 1)
        z = cam[:, 2:].exp()
        transl = torch.cat([cam[:, :2] * z, z], -1)
        pose = pose.view(n, nb, 3)
        rot = torch.cat([rot0[:, None], axis_angle_to_matrix(pose)], 1)
        with_joints = stage is not None and t.joint_prediction is not None and self.temporal_weight(t) > 0
        pts, d = self.model.linearise(rot, betas, transl, with_joints=with_joints)
        # Chain rule to the packed parameters: body joints' increments -> their axis-angle, translation -> camera.
        d_pose = torch.einsum("nrxki,nkij->nrxkj", d[..., 3 : 3 + 3 * nb].unflatten(-1, (nb, 3)),
                              so3_right_jacobian(pose)).flatten(-2)  # fmt: skip
        zero = torch.zeros_like(z)
        d_transl = torch.stack([torch.cat([z, zero, zero], -1), torch.cat([zero, z, zero], -1), transl], -1)
        jac = torch.cat([d[..., :3], d_pose, d[..., 3 + 3 * nb : -3], d[..., -3:] @ d_transl[:, None]], -1)
        jac = jac[..., mask]  # (N, K+J, 3, F)

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
            aligned, w3, d_aligned = self._align_3d(kp, t, conf, jk)
            w3 = (cfg.keypoint_3d_weight * w3)[..., None].sqrt()
            res = torch.cat([res, (w3 * (aligned - t.kp3d)).flatten(1)], 1)
            dres = torch.cat([dres, (w3[..., None] * d_aligned).flatten(1, 2)], 1)
        cost = res.pow(2).sum(-1)
        jtj = dres.transpose(1, 2) @ dres
        g = (dres.transpose(1, 2) @ res[..., None])[..., 0]
        if stage is None:
            return cost, jtj, g
        pose_terms, shape, temporal = self.penalties(pose, betas, pts[:, nk:] if with_joints else None, t, stage)
        if temporal is not None:
            rt, dt = temporal.residuals()
            rt, jt = rt.view(n, -1), dt * jac[:, nk:].flatten(1, 2)
            cost = cost + rt.pow(2).sum(-1)
            jtj = jtj + jt.transpose(1, 2) @ jt
            g = g + (jt.transpose(1, 2) @ rt[..., None])[..., 0]
        # The other priors are residuals on single parameters, so diagonal terms.
        diag_r = x.new_zeros(x.shape)
        diag_d = x.new_zeros(x.shape)
        diag_r2 = x.new_zeros(n)
        pose_cols, beta_cols = slice(3, 3 + 3 * nb), slice(3 + 3 * nb, 3 + 3 * nb + ns)
        for term, at in [(term, pose_cols) for term in pose_terms] + [(shape, beta_cols)]:
            res_p, d2, jtr = term.normal_terms()
            diag_r2 = diag_r2 + res_p.pow(2).flatten(1).sum(-1)
            diag_d[:, at] += d2 if isinstance(d2, float) else d2.expand(res_p.shape).flatten(1)
            diag_r[:, at] += jtr.flatten(1)
        cost = cost + diag_r2
        jtj = jtj + torch.diag_embed(diag_d[:, mask])
        g = g + diag_r[:, mask]
        return cost, jtj, g


def _person_size(kp2d: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N,) the larger side of the box around each person's valid keypoints (pixels, at least 1)."""
    lo = torch.where(valid[..., None], kp2d, torch.full_like(kp2d, math.inf)).amin(1)
    hi = torch.where(valid[..., None], kp2d, torch.full_like(kp2d, -math.inf)).amax(1)
    return (hi - lo).amax(-1).clamp_min(1.0)


def _expand_camera(camera: Camera, frames: int, people: int) -> Camera:
    b = camera.batch_size
    if b == frames * people:
        return camera
    if b == 1:
        return camera.map(lambda x: x.expand(frames * people, -1))
    if b == people:
        return camera.repeat(frames)
    raise ValueError(f"camera has batch {b}; expected 1, {people} (people) or {frames * people} (frames x people)")
