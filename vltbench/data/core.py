"""The types every loader returns: one split (ImageSet) and a train/val pair (Dataset)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vltbench.core.errors import UserError
from vltbench.core.hashing import hash_obj, sha256_bytes


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


def array_splits(name: str, arrays: dict[str, np.ndarray], class_names: list[str], seed: int,
                 train_count: int | None = None, val_count: int | None = None) -> tuple[ArrayImageSet, ArrayImageSet]:
    """The train / val splits of a dataset held in arrays ({split}_images uint8 (n, 3, S, S),
    {split}_labels), each a seeded subset of `{split}_count` images (all of them for None)."""
    sets = []
    for split, count in (("train", train_count), ("val", val_count)):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if count is not None:
            idx = pick(len(y), count, seed, f"{split}_count")
            x, y = x[idx], y[idx]
        sets.append(ArrayImageSet.from_arrays(f"{name}/{split}", x, y, class_names))
    return sets[0], sets[1]


def pick(n: int, count: int | None, seed: int, what: str) -> np.ndarray:
    """Sorted indices of a seeded random subset of `count` out of `n` (all of them for None)."""
    if count is None:
        return np.arange(n)
    if count > n:
        raise UserError(f"{what}={count} but the split has only {n} images: lower {what} or leave it unset")
    return np.sort(np.random.default_rng(seed).permutation(n)[:count])


def stratified(labels: np.ndarray, count: int, seed: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of a seeded, class-stratified subset of `count` images (the whole split when it fits).

    Splits are stored class by class, so "the first n" covers a few classes only. Each class gets its
    share of `count` in proportion to its size among the eligible images (largest remainders round
    up, ties to the lower class id); within a class the images are a seeded random pick. `exclude`:
    indices that may not be picked (e.g. the reference, when picking held-out real images)."""
    labels = np.asarray(labels)
    pool = np.arange(len(labels)) if exclude is None else np.setdiff1d(np.arange(len(labels)), exclude)
    if count >= len(pool):
        return pool
    classes, sizes = np.unique(labels[pool], return_counts=True)
    exact = sizes * count / len(pool)
    share = np.floor(exact).astype(int)
    for i in np.lexsort((classes, -(exact - share)))[: count - share.sum()]:
        share[i] += 1
    rng = np.random.default_rng([seed, 0x5EED])
    picked = [rng.permutation(pool[labels[pool] == c])[:n] for c, n in zip(classes, share)]
    return np.sort(np.concatenate(picked))


def subset_info(split: ImageSet, idx: np.ndarray, seed: int, how: str = "stratified") -> dict:
    """What a record says about a subset: count, images per class, seed and a hash of its indices."""
    counts = np.bincount(split.labels[idx], minlength=split.num_classes)
    return {"split": split.name, "count": int(len(idx)), "of": len(split), "how": how, "seed": seed,
            "per_class": {name: int(n) for name, n in zip(split.class_names, counts)},
            "manifest": hash_obj({"split": split.manifest_hash, "indices": np.asarray(idx).tolist()})}
