"""Evaluation: error metrics (``hmr.evaluation.metrics``); protocols and ``hmr eval`` build on them."""
