"""Where vltbench keeps caches (latents, reference statistics, converted weights, trained checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(sub: str = "") -> Path:
    """$VLTBENCH_CACHE, else $XDG_CACHE_HOME/vltbench, else ~/.cache/vltbench."""
    root = os.environ.get("VLTBENCH_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "vltbench")
    path = Path(root) / sub if sub else Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


# Records travel between machines, so they hold no machine path: a file in the cache or in the installed
# package is named from that root ("<cache>/checkpoints/...", "<vltbench>/assets/..."), which every machine
# resolves to its own; any other file by its path relative to the record's folder (an artifact that
# travels with the records) or, given no folder, by its name alone ("<elsewhere>/name": a data root the
# user passes again; the dataset's content hash, not its path, is in the record's identity).
CACHE, PACKAGE, ELSEWHERE = "<cache>", "<vltbench>", "<elsewhere>"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _roots() -> dict[str, Path]:
    root = os.environ.get("VLTBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "vltbench")
    return {CACHE: Path(os.path.abspath(root)), PACKAGE: _PACKAGE_DIR}


def portable(path: str | Path, base: str | Path | None = None) -> str:
    """`path` as a record holds it (see above); a relative path is kept as it is."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    p = Path(os.path.abspath(p))
    for tag, root in _roots().items():
        if p.is_relative_to(root):
            return f"{tag}/{p.relative_to(root).as_posix()}"
    if base is not None:
        return Path(os.path.relpath(p, os.path.abspath(base))).as_posix()
    return f"{ELSEWHERE}/{p.name}"


def local(text: str, base: str | Path | None = None) -> Path:
    """The file a record's portable path names on this machine (base: the record's folder)."""
    tag, _, rest = text.partition("/")
    roots = _roots()
    if tag in roots:
        return roots[tag] / rest
    p = Path(text)
    return p if p.is_absolute() or base is None else Path(base) / p


def portable_strings(obj, base: str | Path | None = None):
    """`obj` (JSON-like) with every string that is an absolute path made portable."""
    if isinstance(obj, dict):
        return {k: portable_strings(v, base) for k, v in obj.items()}
    if isinstance(obj, list):
        return [portable_strings(v, base) for v in obj]
    if isinstance(obj, str) and os.path.isabs(obj) and "\n" not in obj:
        return portable(obj, base)
    return obj
