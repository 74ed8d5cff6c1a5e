"""The embedded default dataset: square crops of the photos bundled in scikit-image's wheel.

Nothing is downloaded: only photos that `skimage.data` loads from its own wheel are used, each one
public domain or CC0 (see each function's docstring). One photo is one class.

Each photo is cut at 80% of its width: train crops lie entirely in the left part, val crops entirely
in the right part, so no source pixel is shared between the splits. A crop is a square whose side is
`uniform(0.6, 1.0) * base` (base = the val part's width, capped by the photo's height, so both splits
see the same scales), resized to `image_size` with Pillow's antialiased bicubic filter.

Generation takes seconds; the result is cached in cache_dir("data") under a key hashed from the
generator version, the parameters, the seed and the sha256 of every source photo's pixels.
"""

from __future__ import annotations

import zipfile

import numpy as np
import PIL
import skimage.data
from PIL import Image

from vltbench.core.atomic import atomic_path
from vltbench.core.hashing import hash_obj, sha256_bytes
from vltbench.core.paths import cache_dir
from vltbench.data.core import array_splits

GENERATOR_VERSION = "embedded-v1"  # bump when the crops change for the same key inputs

# name -> (loader, trim box (y0, y1, x0, x1) or None). Trim keeps the retina's inscribed square:
# its corners outside the fundus are black.
SOURCES = {
    "astronaut": (skimage.data.astronaut, None),
    "chelsea": (skimage.data.chelsea, None),
    "coffee": (skimage.data.coffee, None),
    "rocket": (skimage.data.rocket, None),
    "hubble_deep_field": (skimage.data.hubble_deep_field, None),
    "retina": (skimage.data.retina, (215, 1190, 215, 1190)),
    "immunohistochemistry": (skimage.data.immunohistochemistry, None),
    "brick": (skimage.data.brick, None),
    "grass": (skimage.data.grass, None),
    "gravel": (skimage.data.gravel, None),
    "camera": (skimage.data.camera, None),
    "coins": (skimage.data.coins, None),
    "text": (skimage.data.text, None),
}
CLASS_NAMES = list(SOURCES)
TRAIN_PER_CLASS, VAL_PER_CLASS = 1540, 154  # 13 classes -> 20,020 train and 2,002 val crops
VAL_FRACTION = 0.2  # right part of each photo's width
SCALE = (0.6, 1.0)  # crop side relative to the base size
SPLITS = ("train", "val")


def photos() -> dict[str, np.ndarray]:
    """The source photos as RGB uint8 (H, W, 3), trimmed; gray ones repeat their channel."""
    out = {}
    for name, (load, trim) in SOURCES.items():
        img = np.asarray(load())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = img[:, :, :3]
        if trim is not None:
            y0, y1, x0, x1 = trim
            img = img[y0:y1, x0:x1]
        out[name] = np.ascontiguousarray(img, dtype=np.uint8)
    return out


def regions(width: int) -> dict[str, tuple[int, int]]:
    """Column ranges [x0, x1) of each split; they touch but share no pixel."""
    cut = int(round(width * (1 - VAL_FRACTION)))
    return {"train": (0, cut), "val": (cut, width)}


def _counts(total: int) -> list[int]:
    """`total` spread over the classes as evenly as possible."""
    n, rest = divmod(total, len(SOURCES))
    return [n + (c < rest) for c in range(len(SOURCES))]


def generate(image_size: int = 32, seed: int = 0, train_count: int | None = None,
             val_count: int | None = None, sources: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Build the crops (no cache). Returns {split}_images uint8 (n, 3, S, S), {split}_labels int64 (n,),
    {split}_boxes int64 (n, 4) as x0, y0, x1, y1 (exclusive) in the trimmed photo, and photo_sizes (C, 2) as H, W."""
    sources = photos() if sources is None else sources
    totals = {"train": train_count or TRAIN_PER_CLASS * len(SOURCES), "val": val_count or VAL_PER_CLASS * len(SOURCES)}
    out: dict[str, np.ndarray] = {"photo_sizes": np.array([p.shape[:2] for p in sources.values()], dtype=np.int64)}
    for s, split in enumerate(SPLITS):
        images, labels, boxes = [], [], []
        for c, (photo, n) in enumerate(zip(sources.values(), _counts(totals[split]))):
            h, w = photo.shape[:2]
            x_lo, x_hi = regions(w)[split]
            base = min(regions(w)["val"][1] - regions(w)["val"][0], h)
            # One stream per (split, class): a class's crops do not depend on the other classes' counts.
            rng = np.random.default_rng([seed, s, c])
            side = np.rint(rng.uniform(*SCALE, size=n) * base).astype(np.int64)
            x0 = x_lo + rng.integers(0, x_hi - x_lo - side + 1)
            y0 = rng.integers(0, h - side + 1)
            box = np.stack([x0, y0, x0 + side, y0 + side], axis=1)
            pil = Image.fromarray(photo)
            crops = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
            for i, b in enumerate(box.tolist()):
                crops[i] = np.asarray(pil.resize((image_size, image_size), Image.BICUBIC, box=b))
            images.append(crops)
            labels.append(np.full(n, c, dtype=np.int64))
            boxes.append(box)
        out[f"{split}_images"] = np.ascontiguousarray(np.concatenate(images).transpose(0, 3, 1, 2))
        out[f"{split}_labels"] = np.concatenate(labels)
        out[f"{split}_boxes"] = np.concatenate(boxes)
    return out


def cache_key(image_size: int, seed: int, train_count: int | None, val_count: int | None,
              sources: dict[str, np.ndarray]) -> str:
    # Pillow's version is in the key because its resampling code makes the pixels.
    return hash_obj({
        "version": GENERATOR_VERSION, "pillow": PIL.__version__, "seed": seed,
        "params": {"image_size": image_size, "train_count": train_count, "val_count": val_count,
                   "train_per_class": TRAIN_PER_CLASS, "val_per_class": VAL_PER_CLASS,
                   "val_fraction": VAL_FRACTION, "scale": SCALE, "trim": {k: v[1] for k, v in SOURCES.items()}},
        "sources": {k: sha256_bytes(repr(v.shape).encode() + v.tobytes()) for k, v in sources.items()},
    })


def build(image_size: int = 32, seed: int = 0, train_count: int | None = None,
          val_count: int | None = None) -> dict[str, np.ndarray]:
    """`generate`, cached as an .npz in cache_dir("data"); an unreadable cache file is rebuilt."""
    sources = photos()
    path = cache_dir("data") / f"embedded-{cache_key(image_size, seed, train_count, val_count, sources)}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass
    arrays = generate(image_size, seed, train_count, val_count, sources)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # uncompressed: photo crops barely compress and this loads fastest
    return arrays


def load(name: str, *, root=None, image_size: int = 32, seed: int = 0, train_count: int | None = None,
         val_count: int | None = None):
    """The dataset loader (vltbench.data.catalog): the crops are generated at these counts (no subset)."""
    return array_splits(name, build(image_size, seed, train_count, val_count), CLASS_NAMES, seed)
