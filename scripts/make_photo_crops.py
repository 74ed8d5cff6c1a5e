"""Write a held-out-style folder of 32 px RGB crops of the photos that ship inside scikit-image's wheel
(public domain / CC0), in the layout `vltbench run --set data.name=folder --data-root DIR` reads
(DIR/train/<class>/*.png, DIR/val/<class>/*.png). One class per photo.

Nothing here was tuned on: it is the "data you did not tune on" of issue 30, natural textures and
edges unlike the procedural shapes of make_rgb_folder.py. Each crop is a random square of 40-120 px at
a random place, box-filtered down to 32 px; train and val crops are drawn from the whole photo by
separate random streams, so the splits share one distribution (a split by region, tried first, made
val a different distribution from train: the right side of chelsea.png is all out-of-focus fur) but
val crops overlap pixels that train crops saw. The same seed writes the same bytes.

    python scripts/make_photo_crops.py --out data/photos            # 500 train / 100 val per class
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vltbench.data.folder_writer import folder_main

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")
SIZE = 32


def _photo(name: str) -> np.ndarray:
    import skimage.data  # the files inside the wheel, read directly (skimage.data's loaders may fetch)

    img = np.asarray(Image.open(Path(skimage.data.__file__).parent / name).convert("RGB"))
    return img[..., :3] if img.ndim == 3 else np.repeat(img[..., None], 3, -1)


def crops(img: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` random square crops, resized to SIZE."""
    h, w = img.shape[:2]
    out = []
    for _ in range(count):
        s = int(min(rng.integers(40, 121), h, w))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        out.append(np.asarray(Image.fromarray(img[y:y + s, x:x + s]).resize((SIZE, SIZE), Image.BOX)))
    return out


def images(c: int, split: str, count: int, seed: int) -> list[np.ndarray]:
    """`count` crops of the c-th photo for `split`."""
    return crops(_photo(PHOTOS[c]), count, np.random.default_rng([seed, c, split == "val"]))


def main():
    folder_main(__doc__, "crops per photo", [p.split(".")[0] for p in PHOTOS], images, SIZE)


if __name__ == "__main__":
    main()
