"""Regression heads shared by the model families."""
