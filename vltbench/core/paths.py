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
