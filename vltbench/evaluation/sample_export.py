"""--save-samples: a cell's gFID samples as an ADM-format .npz (what openai/guided-diffusion's
evaluations/evaluator.py reads): `arr_0` uint8 (N, H, W, 3) in sample-index order, `arr_1` int64
labels (the class each sample was conditioned on).

Every process streams its own batches into a shard (a locked temp file beside the record, so a dead
writer's shard is cleaned like any temp file); once all shards are complete, rank 0 merges them,
exactly once, into the .npz, which ResultStore.write renames into place before the record (atomic:
no .npz without its record). The zip is written member by member, never holding all images in
memory: 50,000 ImageNet images at 256 px are 9.8 GB.
"""

from __future__ import annotations

import os
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from vltbench.core import dist
from vltbench.core.atomic import _locked_temp
from vltbench.core.hashing import sha256_file

from .generate import sample_labels

SUFFIX = ".samples.npz"


def npz_bytes(n: int, height: int, width: int) -> int:
    """Size of arr_0 for n RGB images of height x width (the .npz adds a few hundred bytes)."""
    return n * height * width * 3


class SampleShard:
    """This process's samples (uint8 (B, 3, H, W) batches, in index order) as raw NHWC bytes."""

    def __init__(self, folder: Path, cell: str):
        folder.mkdir(parents=True, exist_ok=True)
        self._fd, self.path = _locked_temp(folder, f"{cell}.samples-rank{dist.rank()}")
        self._f = open(self.path, "wb")
        self.rows, self.shape = 0, None

    def tee(self, batches):
        """Pass the batches through, appending each to the shard."""
        for b in batches:
            a = b.permute(0, 2, 3, 1).contiguous().numpy()
            if a.dtype != np.uint8:
                raise TypeError(f"samples must be uint8, got {a.dtype}")
            self.shape = a.shape[1:]
            self._f.write(a.tobytes())
            self.rows += len(a)
            yield b

    def finish(self) -> tuple[str, int, tuple | None]:
        """(path, rows, (H, W, 3)) once written; the file stays locked until close()."""
        self._f.flush()
        os.fsync(self._f.fileno())
        return str(self.path), self.rows, self.shape

    def close(self) -> None:
        self._f.close()
        Path(self.path).unlink(missing_ok=True)
        os.close(self._fd)


def _write_member(zf: zipfile.ZipFile, name: str, shape: tuple, dtype: np.dtype, chunks) -> None:
    """One .npy member written from byte chunks (C order), as np.save would lay it out."""
    with zf.open(name, "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(
            f, {"shape": tuple(int(s) for s in shape), "fortran_order": False,
                "descr": np.lib.format.dtype_to_descr(np.dtype(dtype))})
        for c in chunks:
            f.write(c)


def merge_shards(shards: list[tuple[str, int, tuple | None]], num_classes: int, out: Path) -> dict:
    """Write the ADM .npz at `out` from every rank's shard (rank order = sample-index order)."""
    n = sum(rows for _, rows, _ in shards)
    shapes = {tuple(s) for _, rows, s in shards if rows}
    if len(shapes) != 1:
        raise RuntimeError(f"sample shards disagree on the image shape: {sorted(shapes)}")
    shape = shapes.pop()

    def image_bytes():
        for path, rows, _ in shards:
            with open(path, "rb") as f:
                while block := f.read(1 << 24):
                    yield block

    labels = sample_labels(torch.arange(n), num_classes).numpy().astype(np.int64)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        _write_member(zf, "arr_0.npy", (n, *shape), np.uint8, image_bytes())
        _write_member(zf, "arr_1.npy", labels.shape, labels.dtype, [labels.tobytes()])
    return {"count": n, "shape": [n, *shape], "labels": "arr_1: class i mod C of sample i (int64)"}


@contextmanager
def merged_npz(shard: SampleShard | None, folder: Path, cell: str, num_classes: int):
    """Every rank: hand its finished shard over; rank 0 yields (temp .npz path, what the record says of
    it) for ResultStore.write to rename into place, the other ranks None. On leaving, rank 0 removes a
    temp the store did not take, then (after a barrier: rank 0 has read every shard) all close theirs."""
    if shard is None:
        yield None
        return
    shards = dist.all_gather_object(shard.finish())
    if not dist.is_main():
        yield None
        dist.barrier()
        return
    fd, tmp = _locked_temp(folder, f"{cell}{SUFFIX}")
    try:
        info = merge_shards(shards, num_classes, Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        info.update(path=f"{cell}{SUFFIX}", sha256=sha256_file(tmp), bytes=os.path.getsize(tmp))
        yield Path(tmp), info
    finally:
        Path(tmp).unlink(missing_ok=True)
        os.close(fd)
    dist.barrier()
