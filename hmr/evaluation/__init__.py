"""Evaluation: error metrics (``hmr.evaluation.metrics``) and the reference systems' protocols
(``hmr.evaluation.protocols``, docs/evaluation.md); datasets and ``hmr eval`` build on them."""
