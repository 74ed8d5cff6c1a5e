"""Write a folder of 32 px RGB images, procedural shapes on textured backgrounds, in the layout
`vltbench run --set data.name=folder --data-root DIR` reads (DIR/train/<class>/*.png, DIR/val/<class>/*.png).

Six classes, one shape each (disc, square, triangle, ring, cross, bar), every image with its own
random colours, size, position, rotation and background: a blend of a colour gradient, stripes
(random frequency and angle) and smoothed noise. Nothing about it is downloaded; the same seed writes
the same bytes. The RGB recipe is being sized on it (scripts/size_small_rgb.py, docs/own-data.md).

    python scripts/make_rgb_folder.py --out data/shapes            # 500 train / 100 val per class
    python scripts/make_rgb_folder.py --out data/shapes --train 50 --val 20 --seed 1
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from vltbench.data.folder_writer import folder_main

CLASSES = ("disc", "square", "triangle", "ring", "cross", "bar")
SIZE = 32
SS = 4  # supersampling: shapes are drawn at 4x and box-filtered down (anti-aliased edges)


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    """(s, s, 3) float in [0, 1]: a colour gradient, stripes and smoothed noise in random proportions."""
    y, x = np.mgrid[0:s, 0:s] / s
    a = rng.uniform(0, 2 * np.pi)
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    t = (np.cos(a) * x + np.sin(a) * y + 1) / 2
    grad = c0 * (1 - t[..., None]) + c1 * t[..., None]
    b = rng.uniform(0, np.pi)
    freq = rng.uniform(1, 4)  # cycles per image: 8 px periods and longer (4 px is the patch size)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(b) * x + np.sin(b) * y) + rng.uniform(0, 2 * np.pi))
    noise = gaussian_filter(rng.normal(size=(s, s, 3)), sigma=(rng.uniform(2, 4) * SS, rng.uniform(2, 4) * SS, 0))
    noise = 0.5 + noise / (6 * noise.std() + 1e-8)
    w = rng.dirichlet([1.5, 1.0, 1.0])
    tint = rng.uniform(0, 1, 3)
    img = w[0] * grad + w[1] * stripes[..., None] * tint + w[2] * noise
    return np.clip(img, 0, 1)


def _mask(shape: str, rng: np.random.Generator, s: int) -> np.ndarray:
    """(s, s) bool: the shape, random size, centre and rotation."""
    r = rng.uniform(0.22, 0.36) * s
    cy, cx = rng.uniform(0.35, 0.65, 2) * s
    rot = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:s, 0:s] + 0.5
    dy, dx = y - cy, x - cx
    u, v = np.cos(rot) * dx + np.sin(rot) * dy, -np.sin(rot) * dx + np.cos(rot) * dy
    if shape == "disc":
        return u ** 2 + v ** 2 <= r ** 2
    if shape == "ring":
        d = np.sqrt(u ** 2 + v ** 2)
        return (d <= r) & (d >= r * rng.uniform(0.45, 0.65))
    if shape == "square":
        return (np.abs(u) <= 0.85 * r) & (np.abs(v) <= 0.85 * r)
    if shape == "cross":
        w = r * rng.uniform(0.25, 0.4)
        return ((np.abs(u) <= r) & (np.abs(v) <= w)) | ((np.abs(v) <= r) & (np.abs(u) <= w))
    if shape == "bar":
        return (np.abs(u) <= 1.2 * r) & (np.abs(v) <= r * rng.uniform(0.2, 0.35))
    if shape == "triangle":  # equilateral, circumradius r
        angles = [np.pi / 2 + k * 2 * np.pi / 3 for k in range(3)]
        inside = np.ones((s, s), bool)
        for k in range(3):
            (x0, y0), (x1, y1) = [(r * np.cos(angles[j]), r * np.sin(angles[j])) for j in (k, (k + 1) % 3)]
            inside &= (x1 - x0) * (v - y0) - (y1 - y0) * (u - x0) >= 0
        return inside
    raise ValueError(shape)


def render(shape: str, rng: np.random.Generator) -> np.ndarray:
    """One uint8 (SIZE, SIZE, 3) image of `shape`."""
    s = SIZE * SS
    img = _background(rng, s)
    colour = rng.uniform(0, 1, 3)
    # keep the shape visible: push its colour away from the background's mean
    mean = img.mean((0, 1))
    if np.abs(colour - mean).mean() < 0.25:
        colour = np.where(mean > 0.5, rng.uniform(0, 0.3, 3), rng.uniform(0.7, 1, 3))
    m = _mask(shape, rng, s)[..., None]
    img = np.where(m, colour * rng.uniform(0.85, 1.0, (s, s, 1)), img)
    img = img.reshape(SIZE, SS, SIZE, SS, 3).mean((1, 3))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def images(c: int, split: str, count: int, seed: int):
    """`count` images of the c-th shape for `split`."""
    rng = np.random.default_rng([seed, int(split == "val"), c])
    return (render(CLASSES[c], rng) for _ in range(count))


def main():
    folder_main(__doc__, "images per class", CLASSES, images, SIZE)


if __name__ == "__main__":
    main()
