"""Write an image set in the `folder` layout (root/train/<class>/*.png, root/val/<class>/*.png) that
`vltbench run --set data.name=folder --data-root DIR` reads: the one writer, and the one command line, of
the scripts that make held-out data (scripts/make_rgb_folder.py, scripts/make_photo_crops.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# images(class index, split, count, seed) -> `count` uint8 (H, W, 3) arrays, drawn from a random stream of
# their own arguments, so the same seed writes the same bytes whatever order the classes are written in
Images = Callable[[int, str, int, int], Iterable[np.ndarray]]


def write_folder(root: Path, classes: Sequence[str], images: Images, train: int = 500, val: int = 100,
                 seed: int = 0) -> int:
    """Write root/{train,val}/<class>/<i>.png; returns the number of images written."""
    n = 0
    for split, count in (("train", train), ("val", val)):
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(images(c, split, count, seed)):
                Image.fromarray(img).save(d / f"{i:04d}.png")
                n += 1
    return n


def folder_main(doc: str, unit: str, classes: Sequence[str], images: Images, size: int) -> None:
    """The scripts' shared command line: --out, --train / --val `unit`s per class, --seed."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--out", required=True, help="folder to write (created)")
    p.add_argument("--train", type=int, default=500, help=f"train {unit}")
    p.add_argument("--val", type=int, default=100, help=f"val {unit}")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    n = write_folder(Path(a.out), classes, images, a.train, a.val, a.seed)
    print(f"{a.out}: {n} images, {len(classes)} classes ({', '.join(classes)}), {size} px")
