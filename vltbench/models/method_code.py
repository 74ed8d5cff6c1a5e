"""The code a method runs: its distribution, version and a hash of its package's source files.

A checkpoint is only as good as the code that trained it: after a one-line edit of a plugin, the old
checkpoint and its records describe code that no longer exists. So the fingerprint is part of the
training identity (the cache key of a checkpoint and of its resumable training states), is written
into every checkpoint's metadata and every record's provenance, and a checkpoint is loaded only by
the code it was trained with (vltbench.models.bundle.load_bundle).

The package is the one holding the method's class: a built-in's own subpackage
(`vltbench.methods.merge`), otherwise the top-level package of its module (a plugin's
`my_pkg`, whichever submodule defines the class), or the module file itself when it is no package.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import sys
from importlib import metadata
from pathlib import Path

BUILT_IN_PREFIX = "vltbench.methods."


def package_of(module: str) -> str:
    """The package whose sources make up a method defined in `module`."""
    parts = module.split(".")
    if module.startswith(BUILT_IN_PREFIX):
        return ".".join(parts[:3])
    return parts[0]


def _source_files(package: str) -> tuple[Path, list[Path]] | None:
    """(root, the .py files under it) of a package, or (folder, [file]) of a plain module."""
    try:
        mod = sys.modules.get(package) or importlib.import_module(package)
    except (ImportError, ValueError):  # e.g. a class made in a notebook or by exec: no source files
        return None
    paths = getattr(mod, "__path__", None)
    if paths:  # a package: every .py file below it (helpers it imports included), caches excluded
        root = Path(list(paths)[0])
        return root, sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    file = getattr(mod, "__file__", None)
    return (Path(file).parent, [Path(file)]) if file else None


def source_sha256(package: str) -> str | None:
    """sha256 over the relative path and bytes of each source file (None: no file, e.g. a class
    defined in a notebook)."""
    found = _source_files(package)
    if found is None:
        return None
    root, files = found
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _distribution(package: str, dist: str | None) -> tuple[str | None, str | None]:
    if package.startswith(BUILT_IN_PREFIX) or package == "vltbench":
        from vltbench.core import __version__
        return "vltbench", __version__
    if dist is None:
        dists = metadata.packages_distributions().get(package.split(".")[0]) or []
        dist = dists[0] if dists else None
    if dist is None:
        return None, None
    try:
        return dist, metadata.version(dist)
    except metadata.PackageNotFoundError:
        return dist, None


@functools.lru_cache(maxsize=None)
def _fingerprint(module: str, dist: str | None) -> tuple:
    package = package_of(module)
    name, version = _distribution(package, dist)
    return (("distribution", name), ("version", version), ("package", package),
            ("source_sha256", source_sha256(package)))


def fingerprint(cls, dist: str | None = None) -> dict:
    """{distribution, version, package, source_sha256} of a method class (dist: its entry point's
    distribution, when known). Computed once per process: the code in memory does not change."""
    return dict(_fingerprint(cls.__module__, dist))


def code(name: str) -> dict:
    """The fingerprint of the code behind the registered method `name`."""
    from vltbench.core import registry

    entry = registry.methods.entry(name)
    return fingerprint(entry.load(), entry.dist)


def identity_part(fp: dict) -> dict:
    """What of a fingerprint decides the training: the distribution, its version and the source hash.
    A built-in's version is vltbench's own, whose changes to training are counted by TRAINING_RECIPE
    (vltbench.models.bundle): a release alone does not make the shipped checkpoints stale, an edit of the
    method's source does."""
    part = {"distribution": fp.get("distribution"), "version": fp.get("version"),
            "source_sha256": fp.get("source_sha256")}
    if part["distribution"] == "vltbench":
        part.pop("version")
    return part


def describe(fp: dict | None) -> str:
    """'vltbench-strided-merge 0.1.0, source 1a2b3c4d5e6f' for messages."""
    if not fp:
        return "code not recorded (written before vltbench recorded method code)"
    who = " ".join(str(x) for x in (fp.get("distribution") or fp.get("package"), fp.get("version")) if x)
    src = (fp.get("source_sha256") or "unknown")[:12]
    return f"{who}, source {src}"
