"""sFID (Nash et al. 2021), as openai/guided-diffusion's evaluations/evaluator.py computes it.

The ADM evaluator takes the TF graph's `mixed_6/conv:0` (the 1x1-conv branch of the fourth 17x17
block: TF's mixed_4..mixed_7 are torch's Mixed_6b..Mixed_6e, so mixed_6 = Mixed_6d, and `conv` its
branch1x1 after batch norm and ReLU), keeps its first 7 channels (`spatial[..., :7]`, NHWC) and
flattens each image to 7 x 17 x 17 = 2023 values, in (row, column, channel) order; mean and
`np.cov(rowvar=False)` of those rows, then the Frechet distance of the two Gaussians, the reference's
from the ADM batch's `mu_s` / `sigma_s`. Here the features come from torch-fidelity's port of the
same network (vltbench's Inception extractor), tapped by a forward hook during the ordinary
extraction pass; the distance is vltbench's frechet_distance (the eigh route: the formula's value,
tested against the evaluator's sqrtm formulation in tests/test_sfid.py).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from .fid import FeatureStats

CHANNELS = 7  # ADM: spatial[..., :7]
DIM = CHANNELS * 17 * 17  # 2023 at the 299 px input the Inception extractor resizes to
SPATIAL_TAG = "sfid:mixed_6-conv-7ch-nhwc"  # added to the extractor id of cached spatial statistics


def unavailable_reason(extractor) -> str | None:
    """Why sFID cannot be measured with `extractor` (None: it can)."""
    if not extractor.id.startswith("inception"):
        return f"sFID needs the Inception extractor (mixed_6/conv features); this one is {extractor.id.split(':')[0]}"
    if getattr(extractor, "backend", None) != "torch-fidelity" or not hasattr(getattr(extractor, "net", None), "Mixed_6d"):
        return "sFID taps torch-fidelity's Inception (Mixed_6d.branch1x1); the clean-fid backend runs a TorchScript graph"
    return None


def spatial_rows(branch1x1: torch.Tensor) -> np.ndarray:
    """(B, 192, 17, 17) branch1x1 activations -> (B, 2023) float64 rows in the evaluator's order."""
    x = branch1x1[:, :CHANNELS].permute(0, 2, 3, 1)  # NHWC, as TF lays it out
    return x.reshape(len(x), -1).detach().cpu().double().numpy()


class SpatialTap:
    """Accumulates the spatial rows of every batch the extractor sees while tapped."""

    def __init__(self):
        self.stats: FeatureStats | None = None  # sized by the first rows (2023 at Inception's 17 x 17)
        self.rows: list[np.ndarray] = []

    def add(self, rows: np.ndarray) -> None:
        self.stats = self.stats or FeatureStats(rows.shape[1])
        self.stats.update(rows)
        self.rows.append(rows.astype(np.float32))

    def features(self) -> np.ndarray:
        return np.concatenate(self.rows) if self.rows else np.zeros((0, DIM), np.float32)


@contextmanager
def tapped(extractor):
    """Within the block, every call of `extractor` also adds its images' spatial rows to the yielded tap."""
    tap = SpatialTap()
    handle = extractor.net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, out: tap.add(spatial_rows(out)))
    try:
        yield tap
    finally:
        handle.remove()


class SpatialView:
    """The extractor seen through its spatial features: for reference_stats, which caches by its id."""

    def __init__(self, extractor):
        self.extractor, self.dim = extractor, DIM
        self.id = f"{extractor.id}:{SPATIAL_TAG}"

    def __call__(self, images):
        with tapped(self.extractor) as tap:
            self.extractor(images)
        return {"features": tap.features().astype(np.float64)}


def sfid(tap_or_stats, ref_mu: np.ndarray, ref_sigma: np.ndarray, features: np.ndarray | None = None) -> float:
    """sFID of the tapped samples (a SpatialTap, or FeatureStats with their rows) against mu_s / sigma_s."""
    from .fid import frechet_distance

    stats = tap_or_stats.stats if isinstance(tap_or_stats, SpatialTap) else tap_or_stats
    if features is None and isinstance(tap_or_stats, SpatialTap):
        features = tap_or_stats.features()
    return frechet_distance(stats.mean(), stats.cov(), ref_mu, ref_sigma, features1=features)
