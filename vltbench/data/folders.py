"""Image datasets on disk, in the `ImageFolder` layout.

Layouts (extensions .png .jpg .jpeg .webp .bmp, any case; hidden files and folders are ignored):
  folder    root/<class>/**/<image>, split 90/10 into train/val by a seeded permutation,
            or root/train/<class>/... and root/val/<class>/... used as given.
  imagenet  root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG (val sorted into class folders).
The class index is the position of the class folder's name in the sorted train class folders.

Images load lazily with Pillow, converted to RGB and preprocessed as in ADM (guided-diffusion): halve
with a box filter while the short side is >= 2 * image_size, bicubic-resize the short side to
image_size, center crop. Horizontal flips are the training code's job (Dataset.flip).

Unreadable images: the scan reads every file once, hashes its bytes (sha256, for the manifest hash)
and decodes it (JPEGs at reduced scale, to be quick). Files that fail are SKIPPED, with one warning
per dataset that counts them: "skipped 3 unreadable images in /data (first: /data/a/x.jpg: ...)".
If a split has no readable image left it is a UserError. A file that breaks after the scan raises a
UserError naming it when it is loaded.

Scan results are cached in cache_dir("data")/manifests per root and reused while a file's size and
mtime are unchanged, so a second scan of ImageNet only stats the files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vltbench.core.atomic import atomic_write_text
from vltbench.core.errors import UserError
from vltbench.core.hashing import canonical_json, hash_obj, sha256_bytes
from vltbench.core.paths import cache_dir
from vltbench.data.core import ImageSet, pick

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VAL_FRACTION = 0.1  # for a folder without train/ and val/
# A file rewritten within the clock's resolution can keep its size and mtime, so only files older
# than this are cached (the "racy git" problem).
MTIME_SLACK_NS = 2_000_000_000


def load_image(path: Path, image_size: int) -> np.ndarray:
    """uint8 (3, S, S): ADM's center_crop_arr."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    while min(im.size) >= 2 * image_size:
        im = im.resize(tuple(x // 2 for x in im.size), resample=Image.BOX)
    scale = image_size / min(im.size)
    im = im.resize(tuple(round(x * scale) for x in im.size), resample=Image.BICUBIC)
    arr = np.asarray(im)
    y, x = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return arr[y:y + image_size, x:x + image_size].transpose(2, 0, 1)


@dataclass
class FolderImageSet(ImageSet):
    """A split on disk; `images` decodes the files on each call."""

    root: Path = field(default=None, kw_only=True)
    files: list[str] = field(default_factory=list, repr=False, kw_only=True)  # relative to root
    image_size: int = field(default=32, kw_only=True)

    def images(self, idx) -> np.ndarray:
        batch = [self._load(self.root / self.files[i]) for i in self.indices(idx)]
        return np.stack(batch) if batch else np.empty((0, 3, self.image_size, self.image_size), np.uint8)

    def _load(self, path: Path) -> np.ndarray:
        try:
            return load_image(path, self.image_size)
        except Exception as e:  # Pillow raises many types for a broken file
            raise UserError(f"cannot read image {path} ({e}); it changed after the dataset scan: "
                            "replace or delete it") from e


def _dirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTS and not any(s.startswith(".") for s in p.relative_to(folder).parts)
                  and p.is_file())


def _check(path: Path) -> list:
    """[sha256 of the bytes, None] for a decodable image, else [None, reason]."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale; a truncated file still fails
            im.load()
        return [sha256_bytes(data)[:32], None]
    except Image.UnidentifiedImageError:  # its message names the in-memory buffer, not the file
        return [None, "not an image format Pillow reads"]
    except Exception as e:  # Pillow raises many types for a broken file
        return [None, f"{type(e).__name__}: {e}"]


def _fingerprints(root: Path, rels: list[str]) -> dict[str, list]:
    """rel -> [size, mtime_ns, digest or None, error or None], reusing cached entries of unchanged files."""
    cache = cache_dir("data") / "manifests" / f"{hash_obj(str(root.resolve()))}.json"
    try:
        old = json.loads(cache.read_text())
    except (OSError, ValueError):
        old = {}
    start = time.time_ns()
    entries, todo = {}, []
    for rel in rels:
        st = (root / rel).stat()
        prev = old.get(rel) if isinstance(old, dict) else None
        if isinstance(prev, list) and len(prev) == 4 and prev[:2] == [st.st_size, st.st_mtime_ns]:
            entries[rel] = prev
        else:
            entries[rel] = [st.st_size, st.st_mtime_ns]
            todo.append(rel)
    if todo:
        with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:  # reading and hashing release the GIL
            for rel, result in zip(todo, pool.map(lambda r: _check(root / r), todo)):
                entries[rel] += result
        keep = {r: e for r, e in entries.items() if e[1] < start - MTIME_SLACK_NS}
        if keep != old:
            atomic_write_text(cache, json.dumps(keep))
    return entries


def _class_files(root: Path, sub: str, classes: list[str] | None) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (path relative to root, label) of the images in root/sub/<class>/."""
    base = root / sub
    names = _dirs(base)
    if classes is None:
        classes = names
    elif extra := sorted(set(names) - set(classes)):
        raise UserError(f"{base} has class folders that {root / 'train'} lacks ({', '.join(extra[:3])}): "
                        "give both splits the same class folders")
    label = {c: i for i, c in enumerate(classes)}
    items = [(p.relative_to(root).as_posix(), label[c]) for c in names for p in _image_files(base / c)]
    if not items:
        raise UserError(f"no images in {base}: expected {base}/<class>/*.png "
                        f"(or {', '.join(IMAGE_EXTS[1:])}) with one folder per class")
    return classes, items


def _manifest_hash(classes: list[str], items: list[tuple[str, int, str]]) -> str:
    h = hashlib.sha256(canonical_json(classes).encode())
    for rel, label, digest in items:
        h.update(f"{rel}\t{label}\t{digest}\n".encode())
    return h.hexdigest()[:16]


def _checked_root(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"dataset root {root} does not exist: set data.root (or --data-root) to an existing folder")
    if not root.is_dir():
        raise UserError(f"dataset root {root} is not a folder: set data.root (or --data-root) to a folder")
    return root


def _no_split(root: Path, split: str) -> UserError:
    return UserError(f"{root} has no {split}/ folder: the layout is {root}/train/<class>/*.JPEG "
                     f"and {root}/val/<class>/*.JPEG")


def count_classes(name: str, root: str | os.PathLike) -> int:
    """The class folders of a `folder` or `imagenet` dataset, counted without reading an image (the
    DiT's label embedding for `vltbench flops`)."""
    root = _checked_root(root)
    split = name == "imagenet" or (root / "train").is_dir() or (root / "val").is_dir()
    base = root / "train" if split else root
    if split and not base.is_dir():
        raise _no_split(root, "train")
    classes = _dirs(base)
    if not classes:
        raise UserError(f"no class folders in {base}: expected {base}/<class>/*.png "
                        f"(or {', '.join(IMAGE_EXTS[1:])}) with one folder per class")
    return len(classes)


def load(name: str, root: str | os.PathLike, image_size: int, seed: int,
         train_count: int | None = None, val_count: int | None = None) -> tuple[FolderImageSet, FolderImageSet]:
    """The train and val splits of a `folder` or `imagenet` dataset (see the module docstring)."""
    root = _checked_root(root)
    has = {s: (root / s).is_dir() for s in ("train", "val")}
    if name == "imagenet" or any(has.values()):
        for split in ("train", "val"):
            if not has[split]:
                raise _no_split(root, split)
        classes, train_items = _class_files(root, "train", None)
        _, val_items = _class_files(root, "val", classes)
    else:
        classes, train_items = _class_files(root, ".", None)
        val_items = []

    checked = _fingerprints(root, [rel for rel, _ in train_items + val_items])
    bad = [rel for rel, e in checked.items() if e[2] is None]
    if bad:
        if len(bad) == len(checked):
            raise UserError(f"no readable images in {root}: all {len(bad)} failed to decode "
                            f"(first: {root / bad[0]}: {checked[bad[0]][3]})")
        warnings.warn(f"skipped {len(bad)} unreadable images in {root} (first: {root / bad[0]}: {checked[bad[0]][3]})",
                      stacklevel=3)
    splits = {"train": [(rel, y, checked[rel][2]) for rel, y in train_items if checked[rel][2]],
              "val": [(rel, y, checked[rel][2]) for rel, y in val_items if checked[rel][2]]}
    if not val_items:  # one folder: a seeded 90/10 split
        items = splits["train"]
        if len(items) < 2:
            raise UserError(f"{root} has {len(items)} readable image: a train/val split needs at least 2")
        perm = np.random.default_rng(seed).permutation(len(items))
        n_val = max(1, int(round(len(items) * VAL_FRACTION)))
        splits = {"train": [items[i] for i in np.sort(perm[n_val:])], "val": [items[i] for i in np.sort(perm[:n_val])]}
    out = []
    for split, count in (("train", train_count), ("val", val_count)):
        if not splits[split]:
            raise UserError(f"no readable images in {root / split}: add images or remove the unreadable ones")
        items = [splits[split][i] for i in pick(len(splits[split]), count, seed, f"{split}_count")]
        out.append(FolderImageSet(
            f"{name}/{split}", _manifest_hash(classes, items), np.array([y for _, y, _ in items], dtype=np.int64),
            len(classes), classes, root=root, files=[rel for rel, _, _ in items], image_size=image_size))
    return out[0], out[1]
