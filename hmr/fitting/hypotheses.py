"""Starting points the solvers cannot find on their own: camera/orientation hypotheses and limb depth choices."""

from __future__ import annotations

import math

import torch

from hmr.body.lbs import forward_kinematics
from hmr.fitting.problem import Params, Problem, Targets, cam_from_transl
from hmr.geometry import (
    Camera,
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    perspective_projection,
    rot6d_to_matrix,
    rotation_between,
)


@torch.no_grad()
def initial_camera(problem: Problem, p: Params, t: Targets, keep_orient: bool, h: int) -> Params:
    """Depth from torso length and focal; orientation from the image's roll and the ``h`` best of the yaw
    hypotheses (or ``p.orient`` when ``keep_orient``); translation puts the torso on its keypoints.
    Returns ``h`` hypotheses per person (see :meth:`Targets.repeat`)."""
    n, dev = len(p.orient), problem.device
    eye = torch.eye(3, device=dev).expand(n, 1, 3, 3)
    kp, _ = problem.model(torch.cat([eye, axis_angle_to_matrix(p.body_pose)], 1), p.frame_betas(t.frames))
    tor_conf = t.conf[:, problem.torso]
    has = tor_conf > 0
    obs, model = t.kp2d[:, problem.torso], kp[:, problem.torso]
    ls, rs, lh, rh = range(4)
    up = _mean_pair(obs, has, (ls, rs)) - _mean_pair(obs, has, (lh, rh))
    if "nose" in problem.names:  # without hips (a torso the border cuts), the head gives the upward direction
        nose = problem.names.index("nose")
        hipless = ~has[:, [lh, rh]].any(-1) & (t.conf[:, nose] > 0)
        up = torch.where(hipless[:, None], t.kp2d[:, nose] - _mean_pair(obs, has, (ls, rs)), up)
    # Shoulder-to-hip lengths barely change with yaw, so their ratio gives the depth.
    pair_ok = torch.stack([has[:, ls] & has[:, lh], has[:, rs] & has[:, rh]], -1).float()
    len2d = torch.stack([(obs[:, ls] - obs[:, lh]).norm(dim=-1), (obs[:, rs] - obs[:, rh]).norm(dim=-1)], -1)
    len3d = torch.stack([(model[:, ls] - model[:, lh]).norm(dim=-1), (model[:, rs] - model[:, rh]).norm(dim=-1)], -1)  # fmt: skip
    size3d = ((model - _mean_pair(model, has, tuple(range(4)))[:, None]).norm(dim=-1) * has).amax(-1)
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
        upright = torch.diag(torch.tensor([1.0, -1.0, -1.0], device=dev))
        k = problem.cfg.yaw_hypotheses
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
            err[(i + d) % len(hyps), torch.arange(n, device=dev)] = math.inf
    while len(pick) < h:
        pick.append(pick[0])
    idx = torch.stack(pick, -1)  # (N, h)
    cols = torch.arange(n, device=dev)[:, None]
    rot, tr = hyps[idx, cols].flatten(0, 1), transl[idx, cols].flatten(0, 1)
    out = p.repeat(t.frames, t.people, h)
    out.orient, out.cam = matrix_to_rot6d(rot), cam_from_transl(tr)
    return out


@torch.no_grad()
def lift_limbs(problem: Problem, p: Params, t: Targets, which: torch.Tensor) -> None:
    """Set each limb's root and hinge rotations so its joints hit their 2D keypoints at the depths chosen by
    bit 0 (middle joint) and bit 1 (end joint) of ``which`` (set = the farther solution)."""
    rot = torch.cat([rot6d_to_matrix(p.orient)[:, None], axis_angle_to_matrix(p.body_pose)], dim=1)
    rest = problem.model.rest_joints(p.frame_betas(t.frames))
    world, pos = forward_kinematics(rot, rest, problem.model.parents, problem.model.levels)
    pos = pos + p.transl()[:, None]
    normalize = torch.nn.functional.normalize
    for limb in problem.limbs:
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
        root_world = rotation_between(bone[..., 0], u1) @ root_world
        local = world[:, problem.model.parents[root]].transpose(-1, -2) @ root_world
        # Hinge angle turning the rest lower bone onto u2 (both seen in the plane normal to the hinge axis).
        e2 = rest[:, end] - rest[:, mid]
        t2 = (root_world.transpose(-1, -2) @ u2[..., None])[..., 0]
        e2, t2 = e2 - (e2 @ a0)[:, None] * a0, t2 - (t2 @ a0)[:, None] * a0
        flex = torch.atan2(torch.cross(e2, t2, dim=-1) @ a0, (e2 * t2).sum(-1))
        p.body_pose[ok, root - 1] = matrix_to_axis_angle(local[ok])
        p.body_pose[ok, mid - 1] = (a0 * flex[:, None])[ok]


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


def _mean_pair(x: torch.Tensor, has: torch.Tensor, idx: tuple[int, ...]) -> torch.Tensor:
    w = has[:, list(idx)].float()[..., None]
    return (x[:, list(idx)] * w).sum(1) / w.sum(1).clamp_min(1)


def _rot_z(a: torch.Tensor) -> torch.Tensor:
    c, s, z, o = a.cos(), a.sin(), torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(-1, 3, 3)


def _rot_y(a: torch.Tensor) -> torch.Tensor:
    c, s, z, o = a.cos(), a.sin(), torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(-1, 3, 3)
