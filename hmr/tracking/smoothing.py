"""Smoothing of per-frame estimates: the One-Euro filter, and the projection that keeps filtered rotation
matrices rotations."""

from __future__ import annotations

import math

import numpy as np


class OneEuroFilter:
    """One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) over arrays of any shape.

    Low-pass filter whose cutoff rises with the signal's speed: ``cutoff = min_cutoff + beta * |dx/dt|``
    (Hz), so slow motion is smoothed strongly (less jitter) and fast motion lags little. ``d_cutoff``
    smooths the speed estimate itself.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, dt: float) -> np.ndarray:
        """Filter the next sample ``x`` taken ``dt`` seconds after the previous one."""
        x = np.asarray(x, np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self._dx), dt)
        self._x = a * x + (1 - a) * self._x
        return self._x.copy()


def project_to_rotation(m: np.ndarray) -> np.ndarray:
    """Nearest rotation matrices (..., 3, 3) to (..., 3, 3) matrices (SVD), e.g. after filtering entries."""
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, -1] *= d[..., None]
    return u @ vt
