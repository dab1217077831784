"""Evaluation: error metrics (``hmr.evaluation.metrics``), the reference systems' protocols
(``hmr.evaluation.protocols``), the evaluation sets (``hmr.evaluation.sets``), ``evaluate`` over a set for a
network or the fitting pipeline, and reports (``hmr.evaluation.report``); docs/evaluation.md."""

from hmr.evaluation.evaluate import PROTOCOLS, EvalResult, evaluate
from hmr.evaluation.predictors import FittingPredictor, NetworkPredictor, Predictor
from hmr.evaluation.sets import EVAL_SETS

__all__ = ["EVAL_SETS", "PROTOCOLS", "EvalResult", "FittingPredictor", "NetworkPredictor", "Predictor", "evaluate"]
