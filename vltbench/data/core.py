"""The types every loader returns: one split (ImageSet) and a train/val pair (Dataset)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vltbench.errors import UserError
from vltbench.hashing import hash_obj, sha256_bytes


@dataclass
class ImageSet:
    """One split. `images(idx)` is the batch accessor; subclasses hold the pixels or the files."""

    name: str  # e.g. "embedded/train"
    manifest_hash: str  # content-derived: equal hashes mean equal images and labels
    labels: np.ndarray  # int64 (n,)
    num_classes: int
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def indices(self, idx) -> np.ndarray:
        """Any numpy index (int, slice, int array, bool mask) as a 1-D int64 array, bounds-checked."""
        return np.atleast_1d(np.arange(len(self), dtype=np.int64)[idx])

    def images(self, idx) -> np.ndarray:
        """uint8 (len(idx), 3, H, W)."""
        raise NotImplementedError


@dataclass
class ArrayImageSet(ImageSet):
    """A split held in memory (embedded, digits)."""

    pixels: np.ndarray = field(default=None, repr=False, kw_only=True)  # uint8 (n, 3, H, W)

    @classmethod
    def from_arrays(cls, name: str, pixels: np.ndarray, labels: np.ndarray, class_names: list[str]) -> ArrayImageSet:
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        digest = hash_obj({"shape": pixels.shape, "pixels": sha256_bytes(pixels.tobytes()),
                           "labels": sha256_bytes(labels.tobytes()), "classes": class_names})
        return cls(name, digest, labels, len(class_names), list(class_names), pixels=pixels)

    def images(self, idx) -> np.ndarray:
        return self.pixels[self.indices(idx)]  # fancy indexing copies: callers may modify the batch


@dataclass
class Dataset:
    name: str
    train: ImageSet
    val: ImageSet
    image_size: int
    flip: bool  # horizontal flip augmentation, applied by the training code
    num_classes: int
    class_names: list[str]
    manifest_hash: str  # of both splits' manifests + name + image_size

    @classmethod
    def from_splits(cls, name: str, train: ImageSet, val: ImageSet, image_size: int, flip: bool) -> Dataset:
        digest = hash_obj({"name": name, "image_size": image_size,
                           "train": train.manifest_hash, "val": val.manifest_hash})
        return cls(name, train, val, image_size, flip, train.num_classes, train.class_names, digest)


def pick(n: int, count: int | None, seed: int, what: str) -> np.ndarray:
    """Sorted indices of a seeded random subset of `count` out of `n` (all of them for None)."""
    if count is None:
        return np.arange(n)
    if count > n:
        raise UserError(f"{what}={count} but the split has only {n} images: lower {what} or leave it unset")
    return np.sort(np.random.default_rng(seed).permutation(n)[:count])
