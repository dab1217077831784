"""The two solvers of :mod:`hmr.fitting`: Adam on the loss, Levenberg-Marquardt on the residuals."""

from hmr.fitting.solvers.adam import adam
from hmr.fitting.solvers.lm import levenberg_marquardt

__all__ = ["adam", "levenberg_marquardt"]
