"""The base class of every feature extractor (its own module: the extractors subclass it and the
registry of extractors, vltbench.evaluation.extractors.builtins, names them; neither imports the other).

An extractor maps uint8 images (B, 3, H, W) to float64 features. Its `id` names the weights (sha256
prefix of the original file) and the preprocessing, so caches and result records keyed on it change
whenever either changes.
"""

from __future__ import annotations

import numpy as np
import torch

from vltbench.core.errors import UserError

INCEPTION_ID_PREFIX = "inception-v3-tf2015"  # the id prefix of the standard Inception-v3: only it is "FID"


class Extractor:
    """Base class: subclasses set name, id, dim, has_logits and implement `_extract`.
    dataset_classes: its logits are the dataset's own classes (class accuracies, no Inception Score)."""

    name: str
    id: str
    dim: int
    has_logits: bool = False
    dataset_classes: bool = False

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
