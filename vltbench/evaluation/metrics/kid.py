"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial
kernel over random subsets, computed by torch-fidelity's own implementation on feature arrays."""

from __future__ import annotations

import numpy as np
import torch


def kid(feats_real, feats_fake, subset_size: int = 1000, subsets: int = 100, seed: int = 2020) -> dict:
    """Returns {kid, kid_std, kid_subset_size}; the subset size is capped at the smaller set's size."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = int(min(subset_size, len(feats_real), len(feats_fake)))
    out = kid_features_to_metric(
        torch.from_numpy(np.ascontiguousarray(feats_real)), torch.from_numpy(np.ascontiguousarray(feats_fake)),
        kid_subset_size=size, kid_subsets=subsets, rng_seed=seed, verbose=False)
    return {"kid": out[KEY_METRIC_KID_MEAN], "kid_std": out[KEY_METRIC_KID_STD], "kid_subset_size": size}
