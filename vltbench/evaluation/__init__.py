"""Evaluation: plan the sweep, generate, compute the metrics against references, store the records."""
