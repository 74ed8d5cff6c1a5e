"""Reference statistics: computed once per (dataset, split, count, preprocessing, extractor) and cached
content-addressed in cache_dir("refstats"); or loaded from an ADM-format reference .npz.

The cache keeps the moment sums and the features (float32) since KID and precision/recall need the
samples themselves, plus the image size the reference was computed at.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from vltbench.core import locks, progress
from vltbench.core.atomic import atomic_path
from vltbench.core.errors import UserError
from vltbench.core.hashing import canonical_json, hash_obj, sha256_file
from vltbench.core.paths import cache_dir

from .fid import FeatureStats

REQUIRED_KEYS = ("dataset", "split", "count", "preprocessing")


@dataclass
class Reference:
    """What the image metrics compare against. `stats` is None for external (ADM) mu/sigma."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None = None  # float32 (n, dim), for KID / precision-recall
    image_size: tuple[int, int] | None = None  # (H, W) of the images the features came from
    extractor_id: str | None = None  # None: statistics from an external evaluator (ADM)
    stats: FeatureStats | None = None
    key: dict = field(default_factory=dict)
    logits: np.ndarray | None = None  # float32 (n, classes) where the extractor gives them


def refstats_key(key: dict, extractor) -> dict:
    missing = [k for k in REQUIRED_KEYS if k not in key]
    if missing:
        raise ValueError(f"reference key lacks {missing}; needs {REQUIRED_KEYS}")
    return {**key, "extractor": extractor.id}


def refstats_path(full_key: dict) -> Path:
    return cache_dir("refstats") / f"{hash_obj(full_key, 24)}.npz"


def extract_all(extractor, batches: Iterable[torch.Tensor], image_size=None):
    """Stream batches through the extractor: (FeatureStats, float32 features, logits or None, (H, W))."""
    stats, feats, logits = FeatureStats(extractor.dim), [], []
    for b in batches:
        size = tuple(b.shape[-2:])
        if image_size is None:
            image_size = size
        elif size != tuple(image_size):
            raise UserError(f"images are {size[0]}x{size[1]} but the reference was computed at "
                            f"{image_size[0]}x{image_size[1]}; use images of the same size (or recompute the reference)")
        out = extractor(b)
        stats.update(out["features"])
        feats.append(out["features"].astype(np.float32))
        if "logits" in out:
            logits.append(out["logits"].astype(np.float32))
    if stats.n == 0:
        raise UserError("no images were given; check the image source")
    return stats, np.concatenate(feats), (np.concatenate(logits) if logits else None), image_size


def reference_stats(key: dict, batches_fn: Callable[[], Iterable[torch.Tensor]], extractor) -> Reference:
    """Cached reference: `key` holds dataset (manifest hash), split, count, preprocessing; the
    extractor id is added. `batches_fn()` yields the uint8 batches, called only on a cache miss."""
    full = refstats_key(key, extractor)
    path = refstats_path(full)
    if not path.is_file():
        # Two runs needing the same set (a reference, the full-length samples of a checkpoint) would
        # both compute it: the second waits for the first here and reads its file instead.
        with locks.hold(path.with_name(path.name + ".lock"), wait=True, on_wait=lambda: progress.log(
                f"another process is computing {full['dataset']} / {full['split']}; waiting for it")):
            if not path.is_file():
                _compute(full, path, batches_fn, extractor)
    with np.load(path) as z:
        stats = FeatureStats.from_arrays(z["n"], z["sum"], z["sum_sq"])
        return Reference(stats.mean(), stats.cov(), z["features"], tuple(int(v) for v in z["image_size"]),
                         extractor.id, stats, json.loads(str(z["key"])), z["logits"] if "logits" in z.files else None)


def _compute(full: dict, path: Path, batches_fn, extractor) -> None:
    stats, feats, logits, size = extract_all(extractor, batches_fn())
    if int(full["count"]) != stats.n:
        raise UserError(f"reference {full['dataset']}/{full['split']} gave {stats.n} images, count={full['count']} "
                        "was requested; lower the count or check the dataset")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        n, s, ss = stats.to_arrays()
        np.savez(f, n=n, sum=s, sum_sq=ss, features=feats, image_size=np.array(size),
                 key=np.array(canonical_json(full)), **({} if logits is None else {"logits": logits}))


# ---- ADM reference batches (guided-diffusion evaluations/, e.g. VIRTUAL_imagenet256_labeled.npz) ----

@dataclass
class AdmNpz:
    path: Path
    mu: np.ndarray
    sigma: np.ndarray
    n_images: int  # 0 when the file has no arr_0
    image_size: tuple[int, int] | None

    def iter_images(self, batch_size: int = 64) -> Iterator[torch.Tensor]:
        """arr_0 as uint8 (B, 3, H, W) batches, streamed from the zip member (never all in memory)."""
        with zipfile.ZipFile(self.path) as zf, zf.open("arr_0.npy") as f:
            shape, dtype = _npy_header(f)
            per = int(np.prod(shape[1:])) * dtype.itemsize
            for start in range(0, shape[0], batch_size):
                k = min(batch_size, shape[0] - start)
                a = np.frombuffer(f.read(k * per), dtype=dtype).reshape(k, *shape[1:])
                yield torch.from_numpy(a.copy()).permute(0, 3, 1, 2).contiguous()


def _npy_header(f) -> tuple[tuple, np.dtype]:
    major, _ = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    if fortran:
        raise UserError("ADM reference: 'arr_0' is stored in Fortran order; re-save it C-contiguous")
    return shape, dtype


def load_adm_npz(path) -> AdmNpz:
    """Validate an ADM reference .npz: mu (2048,), sigma (2048, 2048), optional arr_0 (N, H, W, 3) uint8."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ADM reference {path} does not exist; pass the path of e.g. VIRTUAL_imagenet256_labeled.npz")
    try:
        z = np.load(path)
    except Exception as e:
        raise UserError(f"ADM reference {path} is not a readable .npz ({type(e).__name__}); re-download it") from None
    with z:
        for k in ("mu", "sigma"):
            if k not in z.files:
                raise UserError(f"ADM reference {path} has no '{k}' array (has {sorted(z.files)}); "
                                "pass an ADM reference batch with mu and sigma")
        mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
        if mu.ndim != 1:
            raise UserError(f"ADM reference {path}: 'mu' has shape {mu.shape}, expected (dim,)")
        if sigma.shape != (len(mu), len(mu)):
            raise UserError(f"ADM reference {path}: 'sigma' has shape {sigma.shape}, expected {(len(mu), len(mu))}")
    n, size = 0, None
    with zipfile.ZipFile(path) as zf:
        if "arr_0.npy" in zf.namelist():
            with zf.open("arr_0.npy") as f:
                shape, dtype = _npy_header(f)
            if len(shape) != 4 or shape[3] != 3 or dtype != np.uint8:
                raise UserError(f"ADM reference {path}: 'arr_0' is {dtype} {shape}, expected uint8 (N, H, W, 3)")
            n, size = shape[0], (shape[1], shape[2])
    return AdmNpz(path, mu, sigma, n, size)


def adm_reference(path, extractor=None, batch_size: int = 64) -> Reference:
    """ADM mu/sigma; with an extractor and arr_0 also the (cached) features of arr_0 for KID / P-R."""
    adm = load_adm_npz(path)
    ref = Reference(adm.mu, adm.sigma, image_size=adm.image_size)
    if extractor is not None and adm.n_images:
        if extractor.dim != len(adm.mu):
            raise UserError(f"ADM reference {path} has {len(adm.mu)}-d statistics but extractor {extractor.id} gives "
                            f"{extractor.dim}-d features; use the inception extractor")
        key = {"dataset": f"adm-npz:{sha256_file(path)}", "split": "arr_0", "count": adm.n_images, "preprocessing": "none"}
        ref.features = reference_stats(key, lambda: adm.iter_images(batch_size), extractor).features
    return ref
