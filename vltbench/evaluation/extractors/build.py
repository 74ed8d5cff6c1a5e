"""Feature extractors for distribution metrics (FID, KID, precision/recall, IS): building them by name.

Extractors are entries of vltbench.core.registry.extractors (the built-ins: .builtins; the base
class: .base). Only the standard Inception-v3 is labelled "FID"; any other extractor is reported
as "FD_<name>" (a Frechet distance in its own feature space, not comparable to FID).
"""

from __future__ import annotations

from vltbench.core.errors import UserError
from vltbench.core.registry import extractors as EXTRACTORS

from .base import INCEPTION_ID_PREFIX, Extractor

_CACHE: dict[tuple, Extractor] = {}


def get_extractor(name: str, *, weights=None, backend: str = "torch-fidelity", device="cpu",
                  expected_sha: str | None = None) -> Extractor:
    """Build (once per argument set) the named extractor. `expected_sha`: a sha256 (prefix) or an
    extractor id whose weights the file must match (inception only)."""
    if name not in EXTRACTORS:
        raise UserError(f"unknown feature extractor {name!r}; valid: {', '.join(EXTRACTORS.names())}")
    key = (name, str(weights) if weights else None, backend, str(device), expected_sha)
    if key not in _CACHE:
        policy = EXTRACTORS.info(name)["weights"]  # declared in its registration (.builtins)
        if policy == "none" and (weights is not None or expected_sha is not None):
            raise UserError(f"extractor {name!r} has no weights file; "
                            "drop --inception-weights / expected_sha or use 'inception'")
        if policy == "shipped" and expected_sha is not None:
            raise UserError(f"extractor {name!r} checks its own weights' sha256; drop expected_sha")
        kwargs = {"none": {}, "shipped": {"weights": weights},
                  "file": {"weights": weights, "backend": backend, "expected_sha": expected_sha}}.get(policy)
        if kwargs is None:
            raise UserError(f"extractor {name!r}: unknown weights policy {policy!r}; use none, shipped or file")
        _CACHE[key] = EXTRACTORS.get(name)(device=device, **kwargs)
    return _CACHE[key]


def extractor_for(cfg, device="cpu") -> Extractor:
    """The extractor a config measures with (`eval.extractor` resolved and checked against the dataset)."""
    from .domains import resolve_extractor

    return get_extractor(resolve_extractor(cfg), weights=cfg.eval.inception_weights, backend=cfg.eval.backend,
                         device=device)


def metric_label(extractor_id: str) -> str:
    """'FID' only for the standard Inception-v3; otherwise 'FD_<name>'."""
    name = extractor_id.split(":", 1)[0]
    return "FID" if name == INCEPTION_ID_PREFIX else f"FD_{name}"
