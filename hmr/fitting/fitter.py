"""The fitting procedure: which stages run in what order, from which starting points, with which solver."""

from __future__ import annotations

import dataclasses
import functools

import torch

from hmr.body import BodyModel
from hmr.fitting.config import FitConfig, StageConfig
from hmr.fitting.hypotheses import initial_camera, lift_limbs
from hmr.fitting.problem import Objective, Params, Problem, Targets
from hmr.fitting.solvers import adam, levenberg_marquardt
from hmr.geometry import Camera, axis_angle_to_matrix, perspective_projection, rot6d_to_matrix
from hmr.geometry.camera import HMR2_CROP_SIZE, HMR2_FOCAL_LENGTH
from hmr.outputs import MeshOutput


class Fitter:
    """Stages of :func:`hmr.fitting.fit` on a :class:`Problem` (``self.problem``): camera hypotheses, pose and
    shape stages with limb flip searches, and the output."""

    def __init__(self, body_model: BodyModel, keypoint_format: str, cfg: FitConfig, device: torch.device):
        if cfg.solver not in ("lm", "adam"):
            raise ValueError(f"solver is {cfg.solver!r}; use 'lm' or 'adam'")
        self.problem = Problem(body_model, keypoint_format, cfg, device)
        self.cfg, self.device, self.body_model = cfg, device, body_model

    def fit_camera(self, p: Params, t: Targets, keep_orient: bool = False, h: int = 1) -> Params:
        """Stage 1: orientation and translation on the torso keypoints, from ``h`` hypotheses per person."""
        p = initial_camera(self.problem, p, t, keep_orient, h)
        th = t.repeat(h) if h > 1 else t
        mask = torch.zeros_like(th.conf)
        mask[:, self.problem.torso] = th.conf[:, self.problem.torso]
        self.optimise(p, Objective(th, mask, None, ("orient", "cam")), self.cfg.camera_stage)
        return p

    def run_stage(self, p: Params, t: Targets, stage: StageConfig, near: bool = False) -> None:
        """``near``: the fit starts close to its solution (an init, a previous frame), see :meth:`optimise`."""
        free = ("orient", "cam", "body_pose") + (("betas",) if stage.shape else ())
        self.optimise(p, Objective(t, t.conf, stage, free), stage, near)

    def solve(self, p: Params, t: Targets, start: MeshOutput | None, stages: tuple[StageConfig, ...],
              flips: bool = False) -> Params:  # fmt: skip
        """Cold fit, or ``stages`` from ``start`` (camera estimated first if it has none), each after a limb
        flip search when ``flips``."""
        if start is None:
            return self.fit_cold(p, t)
        if start.cam_t_full is None:
            p = self.fit_camera(p, t, keep_orient=True)
        for stage in stages:
            if flips and self.cfg.flip_search and self.problem.limbs:
                p = self.flip_search(p, t, stage)
            self.run_stage(p, t, stage, near=True)
        return p

    def fit_cold(self, p: Params, t: Targets) -> Params:
        """From the mean pose: camera hypotheses, carried through the first ``orientation_stages`` stages (pose
        stages, then final stages), after which each person keeps their cheapest; every stage after the first
        follows a limb flip search. With 3D keypoints or masks the camera and the first ``cold_2d_stages``
        stages fit the 2D keypoints alone; with 3D keypoints each person's hypothesis is chosen when they join."""
        cfg, h = self.cfg, max(1, self.cfg.orientation_hypotheses)
        stages = (*cfg.pose_stages, *cfg.final_stages)
        flat, n2d = t, 0
        if (t.kp3d is not None or t.silhouette is not None) and cfg.cold_2d_stages > 0:
            flat = dataclasses.replace(t, kp3d=None, conf3d=None, silhouette=None)
            n2d = min(cfg.cold_2d_stages, len(stages) - 1)
        # With 3D keypoints the hypotheses are decided when those join: carrying them through the final stage as
        # well gained 0.2-0.3 mm on the synthetic set (2D + 3D) for three times that stage's work.
        keep = min(max(1, cfg.orientation_stages), len(stages)) if t.kp3d is None else max(n2d, 1)
        p = self.fit_camera(p, flat, h=h)
        th, flat_h = (t.repeat(h), flat.repeat(h)) if h > 1 else (t, flat)
        for i, stage in enumerate(stages):
            ti = flat_h if i < n2d else th
            if i > 0 and cfg.flip_search and self.problem.limbs:
                p = self.flip_search(p, ti, stage)
            self.run_stage(p, ti, stage)
            if h > 1 and i + 1 == keep:
                cost = self.problem.person_cost(p, th, stage).view(t.people, h)
                p = p.choose(t.frames, t.people, h, cost.argmin(-1))
                th, flat_h, h = t, flat, 1
        return p

    def flip_search(self, p: Params, t: Targets, stage: StageConfig) -> Params:
        """Each limb's elbow/knee and wrist/ankle lie on their keypoints' camera rays, each at one of the two
        depths where the ray meets the bone's length (2D keypoints cannot tell them apart). The 4 depth choices
        are set by inverse kinematics (a pure hinge at the elbow/knee) and each limb keeps the one with the
        lowest cost (its keypoints' data terms plus its joints' priors, weighted as in ``stage``)."""
        h = 4
        ph, th = p.repeat(t.frames, t.people, h), t.repeat(h)
        which = torch.arange(th.frames * th.people, device=self.device) % h  # hypothesis of each row
        with torch.no_grad():
            lift_limbs(self.problem, ph, th, which)
            self.problem.prior.project_(ph.body_pose)
            select = dataclasses.replace(stage, prior_scale=self.cfg.flip_select_prior_scale)
            data, prior, _ = self.problem.terms(ph, Objective(th, th.conf, select))
        for limb in self.problem.limbs:
            cost = data[:, limb["keypoints"]].sum(-1) + prior[:, limb["joints"]].sum(-1)
            chosen = ph.choose(t.frames, t.people, h, cost.view(t.frames, t.people, h).sum(0).argmin(-1))
            p.body_pose[:, limb["joints"]] = chosen.body_pose[:, limb["joints"]]
        return p

    def optimise(self, p: Params, obj: Objective, stage: StageConfig, near: bool = False) -> None:
        """Run ``stage``'s solver on ``obj``, changing ``p`` in place.

        Levenberg-Marquardt for single frames. With 3D keypoints only ``near`` a solution: in cold fits it
        converged far more slowly than Adam after the limb flip search (the similarity alignment is held fixed in
        its Jacobian); from a previous frame it is faster and closer (synthetic clips: 8 mm against 16 mm). Video
        batches couple frames (shared shape, temporal term): Adam."""
        problem, cfg, t = self.problem, self.cfg, obj.targets
        priors = obj.priors is not None
        # LM's residuals leave the silhouette out: cold fits with masks use Adam, warm starts LM without it
        cold_only = t.kp3d is not None or (t.silhouette is not None and priors and stage.silhouette)
        if cfg.solver == "lm" and t.frames == 1 and (not cold_only or near) and stage.lm_iterations > 0:
            mask = problem.free_mask(obj.free)
            x, rot = levenberg_marquardt(
                *problem.pack(p),
                functools.partial(problem.normal_equations, obj=obj, mask=mask),
                functools.partial(problem.step, mask=mask, priors=priors),
                stage.lm_iterations,
                cfg,
            )
            problem.unpack_(x, rot, p)
        elif stage.iterations > 0:
            scales = {"orient": 1.0, "body_pose": 1.0, "betas": cfg.betas_lr_scale, "cam": cfg.camera_lr_scale}
            adam(
                [getattr(p, name) for name in obj.free],
                [stage.lr * scales[name] for name in obj.free],
                lambda: problem.loss(p, obj),
                stage.iterations,
                cfg.adam_betas,
                cfg.lr_final_fraction,
                lambda: problem.constrain_(p.body_pose, p.betas, priors),
            )

    @torch.no_grad()
    def output(self, p: Params, t: Targets, init: MeshOutput | None) -> MeshOutput:
        problem = self.problem
        go = rot6d_to_matrix(p.orient)[:, None]
        bp = axis_angle_to_matrix(p.body_pose)
        betas = p.frame_betas(t.frames)
        bm = self.body_model
        dt, dev = bm.v_template.dtype, bm.v_template.device
        full = bm(global_orient=go.to(dev, dt), body_pose=bp.to(dev, dt), betas=betas.to(dev, dt), keypoint_sets=())
        kp, _ = problem.model(torch.cat([go, bp], 1), betas)
        keep = problem.available
        kp = kp[:, keep]
        transl = p.transl()
        out = MeshOutput(
            global_orient=go,
            body_pose=bp,
            betas=betas,
            vertices=full.vertices.to(self.device, torch.float32),
            keypoints_3d=kp,
            keypoint_names=tuple(n for n, a in zip(problem.names, keep.tolist(), strict=True) if a),
            body_model=bm.name,
            cam_t_full=transl,
            focal_length=t.camera.focal_length,
            keypoints_2d_full=t.camera.project(kp, transl),  # pixels of the full image
            joint_observed=t.observed,
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
    out.keypoints_2d = perspective_projection(out.keypoints_3d, out.pred_cam_t, focal)  # normalised crop units
