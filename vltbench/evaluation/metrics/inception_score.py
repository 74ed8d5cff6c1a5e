"""Inception Score from classifier logits (torch-fidelity's implementation). Without logits (an
extractor with no classifier head, e.g. fid-helper's Inception) it is unavailable, never 0."""

from __future__ import annotations

import numpy as np
import torch


def inception_score(logits, splits: int = 10, seed: int = 2020) -> tuple[float | None, float | None, str | None]:
    """(mean, std, None), or (None, None, reason) when it cannot be computed."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    if logits is None:
        return None, None, "Inception Score unavailable: the feature extractor has no classifier head (no logits)"
    logits = np.asarray(logits)
    if len(logits) < splits:
        return None, None, f"Inception Score unavailable: {len(logits)} samples < {splits} splits"
    out = isc_features_to_metric(torch.from_numpy(logits), splits=splits, shuffle=True, rng_seed=seed)
    return out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD], None
