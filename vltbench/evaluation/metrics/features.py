"""Feature extractors for distribution metrics (FID, KID, precision/recall, IS).

An extractor maps uint8 images (B, 3, H, W) to float64 features. Its `id` names the weights (sha256
prefix of the original file) and the preprocessing, so caches and result records keyed on it change
whenever either changes. Only the standard Inception-v3 is labelled "FID"; any other extractor is
reported as "FD_<name>" (a Frechet distance in its own feature space, not comparable to FID).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from vltbench.core.errors import UserError

INCEPTION_ID_PREFIX = "inception-v3-tf2015"


class Extractor:
    """Base class: subclasses set name, id, dim, has_logits and implement `_extract`."""

    name: str
    id: str
    dim: int
    has_logits: bool = False

    def _extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        check_images(images)
        with torch.inference_mode():
            out = self._extract(images)
        return {k: v.detach().cpu().double().numpy() for k, v in out.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, dim={self.dim})"


def check_images(images) -> None:
    """Extractors take uint8 RGB batches (B, 3, H, W); anything else is a caller mistake."""
    if not torch.is_tensor(images):
        raise UserError(f"images must be a torch.Tensor (B,3,H,W) uint8, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise UserError(f"images must be uint8 in [0, 255], got {images.dtype}; "
                        "convert with (x * 255).round().clamp(0, 255).to(torch.uint8)")
    if images.ndim != 4 or images.shape[1] != 3:
        raise UserError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")


def _make_inception(**kw) -> Extractor:
    from .inception import InceptionExtractor

    return InceptionExtractor(**kw)


def _make_randproj(*, weights=None, backend=None, device="cpu", expected_sha=None) -> Extractor:
    from .randproj import RandProjExtractor

    if weights is not None or expected_sha is not None:
        raise UserError("extractor 'randproj' has no weights file; "
                        "drop --inception-weights / expected_sha or use 'inception'")
    return RandProjExtractor(device=device)


def _make_classifier(*, weights=None, backend=None, device="cpu", expected_sha=None) -> Extractor:
    from .classifier import ClassifierExtractor

    if expected_sha is not None:
        raise UserError("extractor 'mnist-cnn' checks its own weights' sha256; drop expected_sha")
    return ClassifierExtractor(weights=weights, device=device)


# Their domains (which datasets each is valid for) are declared in vltbench.evaluation.metrics.domains.
EXTRACTORS: dict[str, Callable[..., Extractor]] = {"inception": _make_inception, "randproj": _make_randproj,
                                                   "mnist-cnn": _make_classifier}
_CACHE: dict[tuple, Extractor] = {}


def get_extractor(name: str, *, weights=None, backend: str = "torch-fidelity", device="cpu",
                  expected_sha: str | None = None) -> Extractor:
    """Build (once per argument set) the named extractor. `expected_sha`: a sha256 (prefix) or an
    extractor id whose weights the file must match (inception only)."""
    if name not in EXTRACTORS:
        raise UserError(f"unknown feature extractor {name!r}; valid: {', '.join(sorted(EXTRACTORS))}")
    key = (name, str(weights) if weights else None, backend, str(device), expected_sha)
    if key not in _CACHE:
        _CACHE[key] = EXTRACTORS[name](weights=weights, backend=backend, device=device, expected_sha=expected_sha)
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
