"""Image-quality metrics: FID / KID / precision-recall / IS from streamed features, reconstruction metrics.

Entry point: `compute_image_metrics`. The feature extractors they compare features of are their own
package, vltbench.evaluation.extractors. Submodules are imported lazily so that importing a sibling
module (e.g. vltbench.evaluation.metrics.flops) stays cheap. kid / precision_recall / inception_score share
their module's name: import them from the submodules.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # annotations only: importing vltbench.evaluation.metrics.specs (tables, check) stays torch-free
    import torch

_EXPORTS = {
    "FeatureStats": "fid", "frechet_distance": "fid", "fid_from_stats": "fid", "fid_bootstrap_std": "fid",
    "reference_stats": "refstats", "load_adm_npz": "refstats", "adm_reference": "refstats", "Reference": "refstats",
    "ReconMeter": "recon", "lpips_model": "recon",
    "MetricSpec": "specs", "register_metric": "specs", "metric_spec": "specs", "metric_specs": "specs",
}
__all__ = ["compute_image_metrics", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)


def compute_image_metrics(extractor, real_batches: Iterable[torch.Tensor] | None,
                          fake_batches: Iterable[torch.Tensor], *,
                          ref=None, kid_subset_size: int = 1000, kid_subsets: int = 100, pr_k: int = 3,
                          isc_splits: int = 10, fid_bootstrap: int = 10, fid_method: str = "eigh",
                          seed: int = 0, return_features: bool = False) -> dict:
    """Distribution metrics of generated (`fake_batches`) against real images: either `real_batches`
    (uint8 (B,3,H,W) batches, streamed) or a precomputed `ref` (refstats.Reference), not both.
    Only features are kept in memory, never images. Unavailable metrics are None, with the reason in
    result["reasons"]; never 0. fid_bootstrap: resamples for fid_bootstrap_std (0 = off);
    fid_method: "eigh" (stable, the default) or "sqrtm" (scipy's, for parity tests), see
    fid.frechet_distance. fake_batches may instead be a Reference of generated images extracted
    before (reference_stats): the same numbers as extracting them again. return_features:
    also return the generated images' features (float32, in order) as result["features"] and their
    logits (or None) as result["logits"]."""
    from vltbench.core.errors import UserError
    from vltbench.evaluation.extractors.build import metric_label

    from .fid import fid_bootstrap_std, frechet_distance
    from .inception_score import inception_score
    from .kid import kid
    from .precision_recall import precision_recall
    from .refstats import Reference, extract_all

    if (ref is None) == (real_batches is None):
        raise ValueError("pass exactly one of real_batches and ref")
    if ref is None:
        stats, feats, _, size = extract_all(extractor, real_batches)
        ref = Reference(stats.mean(), stats.cov(), feats, size, extractor.id, stats)
    elif ref.extractor_id is not None and ref.extractor_id != extractor.id:
        raise UserError(f"reference statistics were computed with {ref.extractor_id}, not {extractor.id}; "
                        "recompute the reference or use the same extractor and weights")
    if isinstance(fake_batches, Reference):  # extracted before: float64 moments, float32 features
        if fake_batches.extractor_id != extractor.id:
            raise ValueError(f"the generated set was extracted with {fake_batches.extractor_id}, not {extractor.id}")
        fstats, ffeats, flogits = fake_batches.stats, fake_batches.features, fake_batches.logits
    else:
        fstats, ffeats, flogits, _ = extract_all(extractor, fake_batches, image_size=ref.image_size)

    n_real = ref.stats.n if ref.stats is not None else (len(ref.features) if ref.features is not None else None)
    for what, n in (("real", n_real), ("generated", fstats.n)):
        if n is not None and n <= extractor.dim:
            warnings.warn(f"{n} {what} samples <= feature dim {extractor.dim}: the covariance is singular and "
                          f"{metric_label(extractor.id)} is strongly biased; use more than {extractor.dim} samples",
                          stacklevel=2)

    reasons = {}
    out = {"fid": frechet_distance(fstats.mean(), fstats.cov(), ref.mu, ref.sigma, method=fid_method,
                                   features1=ffeats)}
    out["fid_bootstrap_std"] = fid_bootstrap_std(ffeats, (ref.mu, ref.sigma), n_boot=fid_bootstrap, seed=seed)
    if out["fid_bootstrap_std"] is None:
        reasons["fid_bootstrap_std"] = "bootstrap disabled (fid_bootstrap < 2)"
    if ref.features is not None:
        out.update(kid(ref.features, ffeats, subset_size=kid_subset_size, subsets=kid_subsets, seed=seed))
        out.update(precision_recall(ref.features, ffeats, k=pr_k, device=getattr(extractor, "device", "cpu")))
    else:
        out.update(kid=None, kid_std=None, precision=None, recall=None)
        reasons["kid"] = reasons["precision"] = "reference has statistics only (no features / reference images)"
    # a dataset classifier's logits are its classes (class_acc), not Inception's ImageNet head
    is_logits = None if getattr(extractor, "dataset_classes", False) else flogits
    out["inception_score"], out["inception_score_std"], why = inception_score(is_logits, splits=isc_splits)
    if flogits is not None and is_logits is None:
        why = f"Inception Score needs Inception's ImageNet head; {extractor.id.split(':')[0]} logits give class_acc"
    if why:
        reasons["inception_score"] = why
    out.update(n_real=n_real, n_fake=fstats.n, extractor_id=extractor.id, label=metric_label(extractor.id),
               reasons=reasons)
    if return_features:
        out["features"], out["logits"] = ffeats, flogits
    return out
