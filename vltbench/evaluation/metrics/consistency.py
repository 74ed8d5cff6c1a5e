"""Cross-length consistency of generated samples, without any reference set.

The paper's central claim is that a merged-token model keeps the *same* image as K shrinks, while a
truncated one drifts. Sample i at length K and at K = N share their seed (the full-space noise) and
class, so their feature distance measures that drift directly:

    xlen_distance = mean_i ||f_K(i) - f_N(i)|| / mean_i ||f_N(i) - f_N(partner(i))||

partner(i) = i + C (mod n): another seed of the same class at K = N (class = index mod C). 0 means
the samples at K are the samples at N; 1 means they are as different as two samples of one class.
"""

from __future__ import annotations

import numpy as np


def xlen_distance(feats_k: np.ndarray, feats_n: np.ndarray, num_classes: int) -> float | None:
    """See the module doc. None when there is no same-class partner (n <= num_classes)."""
    a, b = np.asarray(feats_k, np.float64), np.asarray(feats_n, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired features differ in shape: {a.shape} vs {b.shape}")
    n = len(b)
    if n <= num_classes:
        return None
    partner = np.roll(b, -num_classes, axis=0)
    return float(np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(b - partner, axis=1).mean())
