"""scikit-learn's handwritten digits (1,797 8x8 gray images, shipped in its wheel) as a small RGB set."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vltbench.data.core import array_splits

CLASS_NAMES = [str(d) for d in range(10)]
VAL_FRACTION = 0.2


def build(image_size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """{split}_images uint8 (n, 3, S, S) and {split}_labels int64; a seeded 80/20 split."""
    from sklearn.datasets import load_digits  # here: importing sklearn takes a while

    digits = load_digits()
    gray = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # values are 0..16
    up = np.stack([np.asarray(Image.fromarray(g).resize((image_size, image_size), Image.BICUBIC)) for g in gray])
    rgb = np.repeat(up[:, None], 3, axis=1)
    perm = np.random.default_rng(seed).permutation(len(gray))
    n_val = int(round(len(gray) * VAL_FRACTION))
    out = {}
    for split, idx in (("train", np.sort(perm[n_val:])), ("val", np.sort(perm[:n_val]))):
        out[f"{split}_images"] = rgb[idx]
        out[f"{split}_labels"] = digits.target[idx].astype(np.int64)
    return out


def load(name: str, *, root=None, image_size: int = 32, seed: int = 0, train_count: int | None = None,
         val_count: int | None = None):
    """The dataset loader (vltbench.data.catalog): a seeded subset of `build`'s splits."""
    return array_splits(name, build(image_size, seed), CLASS_NAMES, seed, train_count, val_count)
