"""The checkpoints shipped in vltbench/assets, listed in its checkpoints.json (written by scripts/ship.py)."""

from __future__ import annotations

import json
from importlib import resources


def manifest() -> tuple[dict, object]:
    """(the manifest: "<preset>/<method>" -> entry, the assets folder)."""
    assets = resources.files("vltbench.assets")
    manifest_file = assets.joinpath("checkpoints.json")
    return (json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}), assets


def entry_by_sha(sha: str) -> dict | None:
    """The manifest entry of the shipped checkpoint with this sha256 (None if it is not shipped)."""
    return next((e for e in manifest()[0].values() if e.get("sha256") == sha), None)
