"""Settings of keypoint fitting (serialise with ``hmr.config.save_yaml`` / ``load_yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StageConfig:
    """One optimisation stage, run by one of the two solvers (``FitConfig.solver``, docs/fitting.md).

    ``prior_scale`` multiplies the pose and shape regularisers (SMPLify-style annealing: strong first, weak
    last); ``shape`` says whether betas are optimised.
    """

    # Adam steps, with the learning rate decaying from ``lr`` to ``lr * FitConfig.lr_final_fraction`` (cosine).
    iterations: int
    lr: float
    prior_scale: float = 1.0
    shape: bool = True
    # Levenberg-Marquardt iterations used instead of the Adam steps where LM applies (``FitConfig.solver`` "lm"
    # and a single-frame fit; with 3D keypoints only near a solution); 0: Adam for this stage.
    lm_iterations: int = 0
    # Whether the silhouette term (person masks given) joins this stage; off in the first, strongly regularised
    # pose stage, whose orientation hypotheses it would multiply the cost of (cold fits leave it out of their
    # first ``FitConfig.cold_2d_stages`` stages in any case).
    silhouette: bool = True


@dataclass
class FitConfig:
    """Weights, stages and robustness settings of :func:`hmr.fitting.fit`.

    Reprojection residuals are measured in units of the person's 2D size (the larger side of the box
    around their confident keypoints), so the weights do not depend on image resolution; 3D residuals are
    in metres.
    """

    # Stage 1: global orientation and translation from torso keypoints, body in its rest pose.
    camera_stage: StageConfig = field(
        default_factory=lambda: StageConfig(iterations=40, lr=0.05, shape=False, lm_iterations=10)
    )
    # Stage 2 (cold start): full pose and shape, priors annealed from strong to weak.
    pose_stages: tuple[StageConfig, ...] = (
        StageConfig(iterations=80, lr=0.05, prior_scale=10.0, lm_iterations=10, silhouette=False),
        StageConfig(iterations=120, lr=0.03, prior_scale=1.0, lm_iterations=10),
    )
    # Limb flip search before each later pose stage and each final stage: the 4 depth choices of every limb's
    # elbow/knee and wrist/ankle are set by inverse kinematics and the cheapest per limb is kept (pose
    # regulariser weighted by ``flip_select_prior_scale``); ``final_stages`` polish with weak priors.
    flip_search: bool = True
    flip_select_prior_scale: float = 1.0
    final_stages: tuple[StageConfig, ...] = (StageConfig(iterations=300, lr=0.03, prior_scale=0.01, lm_iterations=20),)
    # Stages used instead when starting from ``init`` (network refinement: the pose regulariser pulls to the
    # init's pose), and by SequenceFitter for every frame after the first (warm start from the previous frame,
    # after a limb flip search; the regulariser stays centred on the mean pose, as in a cold fit's last stage).
    refine_stages: tuple[StageConfig, ...] = (StageConfig(iterations=40, lr=0.01, prior_scale=1.0, lm_iterations=15),)
    warm_stages: tuple[StageConfig, ...] = (StageConfig(iterations=10, lr=0.02, prior_scale=0.01, lm_iterations=10),)
    # A warm-started person whose mean reprojection error (in units of their 2D size) exceeds this is fitted
    # again from scratch.
    warm_restart_error: float = 0.02
    # Yaw angles (about the body's vertical axis) tried by stage 1, how many of the best are carried through the
    # first ``orientation_stages`` pose and final stages (then the lowest cost wins; with 3D keypoints as soon as
    # they join, see ``cold_2d_stages``).
    yaw_hypotheses: int = 12
    orientation_hypotheses: int = 3
    orientation_stages: int = 3
    # Cold fits with 3D keypoints or masks: the camera stage and this many stages after it fit the 2D keypoints
    # alone, so Levenberg-Marquardt runs them (where ``solver`` and the stage allow); then the 3D keypoints and
    # the silhouette join (Adam), and with 3D keypoints each person's orientation hypothesis is chosen by the
    # cost with them. 0: from the camera stage on (all Adam; hypotheses chosen after the first pose stage).
    cold_2d_stages: int = 2
    # "lm": Levenberg-Marquardt (damped Gauss-Newton per person) for single-frame fits, converging in a few tens
    # of iterations; "adam": Adam everywhere. Cold-fit stages with 3D keypoints (after ``cold_2d_stages``) and
    # video batches (frames fitted jointly) always use Adam; fits with 3D keypoints from an init or a previous
    # frame use LM.
    solver: str = "lm"
    # Initial damping (divided by ``lm_damping_decrease`` after a step that lowers the cost, multiplied by
    # ``lm_damping_increase`` otherwise), its floor relative to the mean curvature, and the largest change of any
    # parameter in one step (radians, betas, camera units).
    lm_damping: float = 1e-2
    lm_damping_decrease: float = 3.0
    lm_damping_increase: float = 4.0
    lm_damping_floor: float = 0.1
    lm_max_step: float = 0.05
    # A person stops after ``lm_patience`` LM steps in a row that each lowered their cost by less than
    # ``lm_tolerance`` (a fraction): with noisy keypoints the last small gains only fit the noise (synthetic set,
    # 5 px: 65.8 -> 61.6 mm; exact keypoints unchanged).
    lm_tolerance: float = 0.01
    lm_patience: int = 2
    # Adam's moment decay rates; each stage's learning rate decays (cosine) to this fraction of ``lr``.
    adam_betas: tuple[float, float] = (0.9, 0.99)
    lr_final_fraction: float = 0.1
    # Adam learning rate of the betas and of the camera (x/z, y/z, log z), relative to the stage's (rotations: 1).
    betas_lr_scale: float = 2.0
    camera_lr_scale: float = 0.3
    # Geman-McClure scale, in units of the person's 2D size.
    robust_sigma: float = 0.1
    keypoint_weight: float = 1.0
    keypoint_3d_weight: float = 1.0
    # How ``keypoints_3d`` relate to the model: "similarity" (unknown rotation, scale and origin), "rigid"
    # (unknown rotation and origin, metric; with BlazePose's world landmarks every body came out short,
    # docs/fitting.md) or "translation" (camera-frame orientation, metric, unknown origin).
    keypoint_3d_alignment: str = "similarity"
    pose_weight: float = 3e-4
    # Extra regulariser weight on limb twists and off-hinge turns of elbows/knees (see hmr.fitting.priors).
    twist_weight: float = 4.0
    shape_weight: float = 1e-4
    # The shape regulariser's annealing stops at this fraction of ``shape_weight`` (the pose priors' goes on).
    # With a detector's keypoints, components that barely move a keypoint otherwise drift to the bound under the
    # last stages' 1% priors, driven by small systematic offsets (the pipeline sets 1: real photos 35% -> 3% of
    # components at +-3); exact keypoints do tell them (synthetic set, 2D only: 36.6 mm with 0, 50.0 with 1).
    shape_prior_floor: float = 0.0
    # Extra shape-regulariser weight on the components that change height: 1 + height_prior * (metres per sd)^2
    # (hmr.fitting.priors.height_scale); 0: all components alike.
    height_prior: float = 0.0
    # Hard bound on |betas| (standard deviations). Keypoints constrain shape weakly and noisy landmarks
    # (BlazePose's world landmarks, people seen from behind) otherwise drive components to 6-9 sd, i.e.
    # grotesque bodies; 4D-Humans likewise treats |beta| > 3 as implausible.
    max_abs_beta: float = 3.0
    limit_weight: float = 10.0
    bending_weight: float = 1.0
    # Temporal smoothness: squared joint acceleration (metres per frame^2) over the frames axis of a video batch;
    # for SequenceFitter, squared distance to the constant-velocity prediction from the two previous frames,
    # weaker because it carries any error of those frames forward.
    temporal_weight: float = 0.01
    online_temporal_weight: float = 1e-3
    # Silhouette term against person masks (``fit(masks=...)``; hmr.fitting.silhouette, docs/fitting.md), in the
    # Adam stages with priors: its weight (0: off), Geman-McClure scale and the cover part's margin (person
    # sizes; room for clothes) and relative weight.
    silhouette_weight: float = 100.0
    silhouette_sigma: float = 0.05
    silhouette_margin: float = 0.03
    silhouette_cover: float = 3.0
    # Confidences at or below this are ignored.
    min_confidence: float = 0.0
    # Keypoints below this confidence, and those whose limb's pivot keypoints are below it (an ankle whose knee
    # is), are ignored, and joints no used keypoint observes keep their start (docs/fitting.md, "Unseen parts").
    # 0: off. The pipeline sets 0.5 for BlazePose's visibility, which invents limbs the image border cuts off.
    visible_confidence: float = 0.0
    # Weight, not annealed, of the pose regulariser on the joints no used keypoint observes: keypoints near a
    # joint (BlazePose's hips on the hip joints) would otherwise turn it wherever the weak last-stage priors allow.
    unseen_weight: float = 0.01
    num_betas: int = 10
