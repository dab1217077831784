"""Finite differences of joint trajectories: the acceleration that video smoothing reports and the
evaluation's acceleration error and jitter are computed from."""

from __future__ import annotations

import torch


def finite_difference(x: torch.Tensor, order: int) -> torch.Tensor:
    """(T, ...) -> (T - order, ...) forward difference of ``order`` along time (float64)."""
    x = torch.as_tensor(x).double()
    for _ in range(order):
        x = x[1:] - x[:-1]
    return x


def acceleration(joints: torch.Tensor) -> torch.Tensor:
    """(T, J, 3) a sequence of joints -> (T-2,) mean joint acceleration ``|x[t+1] - 2 x[t] + x[t-1]|`` per
    frame (units per frame²): the jitter of a track."""
    x = torch.as_tensor(joints).double()
    if x.shape[0] < 3:
        return x.new_zeros(0)
    return finite_difference(x, 2).norm(dim=-1).mean(-1)
