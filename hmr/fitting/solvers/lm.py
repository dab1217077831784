"""Levenberg-Marquardt: damped Gauss-Newton on each person's own parameters, one small solve per person."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hmr.fitting.config import FitConfig

# (cost (N,), J^T J (N, F, F), J^T r (N, F)) of the packed parameters x at the anchor rotation.
Equations = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@torch.no_grad()
def levenberg_marquardt(x: torch.Tensor, anchor: torch.Tensor, equations: Equations,
                        step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                        iterations: int, cfg: FitConfig) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Minimise each person's cost over their row of ``x`` (N, F_all) and ``anchor`` (N, ...).

    ``equations(x, anchor)`` linearises; ``step(x, anchor, dx)`` applies a step dx (N, F) over the free columns
    and returns the candidate (x, anchor). A step is kept where it lowers that person's cost (the damping then
    shrinks by ``cfg.lm_damping_decrease``), else the damping grows by ``cfg.lm_damping_increase``. Returns the
    final (x, anchor).
    """
    n = len(x)
    cost, jtj, g = equations(x, anchor)
    damping = torch.full((n,), cfg.lm_damping, device=x.device, dtype=x.dtype)
    flat = torch.zeros(n, dtype=torch.long, device=x.device)
    for _ in range(iterations):
        diag = torch.diagonal(jtj, dim1=-2, dim2=-1)
        # Marquardt scaling with a floor, so that directions the data barely constrain (limb twists under weak
        # priors) are damped too, and a trust region on the largest component: without them Gauss-Newton's long
        # steps jump to distant, worse minima.
        floor = diag.mean(-1, keepdim=True) * cfg.lm_damping_floor
        a = jtj + damping[:, None, None] * torch.diag_embed(torch.maximum(diag, floor))
        dx = -torch.linalg.solve(a, g)
        dx = dx * (cfg.lm_max_step / dx.abs().amax(-1, keepdim=True).clamp_min(cfg.lm_max_step))
        new, new_anchor = step(x, anchor, dx)
        # The candidate's normal equations come with its cost: kept for the next step if it is accepted.
        new_cost, new_jtj, new_g = equations(new, new_anchor)
        ok = (new_cost < cost) & (flat < cfg.lm_patience)
        gain = torch.where(ok, (cost - new_cost) / cost.clamp_min(1e-12), torch.zeros_like(cost))
        x = torch.where(ok[:, None], new, x)
        anchor = torch.where(ok.view(-1, *[1] * (anchor.dim() - 1)), new_anchor, anchor)
        jtj = torch.where(ok[:, None, None], new_jtj, jtj)
        g = torch.where(ok[:, None], new_g, g)
        cost = torch.where(ok, new_cost, cost)
        damping = torch.where(ok, damping / cfg.lm_damping_decrease, damping * cfg.lm_damping_increase).clamp(1e-7, 1e7)
        # A person has converged after ``lm_patience`` steps in a row that gained less than ``lm_tolerance`` of
        # their cost; they are left as they are (so a result does not depend on who else is in the batch), and the
        # loop ends when everyone has.
        flat = torch.where(gain < cfg.lm_tolerance, flat + 1, torch.zeros_like(flat))
        if bool((flat >= cfg.lm_patience).all()):
            break
    return x, anchor
