"""Maintainer tool: ship trained checkpoints with the package (fp16 safetensors in vltbench/assets).

    python scripts/ship.py --preset tiny            # every built-in method; --methods a,b for some

Copies each method's trained checkpoint from the cache (what `vltbench train` wrote) into this
checkout's vltbench/assets/<preset>-<method>.safetensors in fp16 and records its sha256 and training identity
in vltbench/assets/checkpoints.json, which `vltbench run` checks before loading it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vltbench.core import registry
from vltbench.core.config import load_config
from vltbench.data import load_data
from vltbench.core.hashing import hash_obj
from vltbench.models import method_code
from vltbench.models.bundle import load_bundle, save_bundle, training_identity
from vltbench.training.checkpoints import cached_path

ASSETS = Path(__file__).resolve().parents[1] / "vltbench" / "assets"  # this checkout's, committed with it


def builtin_methods() -> list[str]:
    """The methods vltbench itself registers (its pyproject's entry points), not installed plugins."""
    return [n for n in registry.names() if registry.methods.entry(n).dist == "vltbench"]


def ship(preset: str, methods: list[str]) -> dict:
    cfg = load_config(preset)
    ds = load_data(cfg.data)
    assets = ASSETS
    manifest_path = assets / "checkpoints.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for method in methods:
        src = cached_path(cfg, method, ds.num_classes)
        bundle = load_bundle(src, cfg, method, ds.num_classes)
        name = f"{preset}-{method}.safetensors"
        sha = save_bundle(bundle, assets / name, dtype=torch.float16)
        # the config identity (as before method code was recorded) and the code it was trained with
        manifest[f"{preset}/{method}"] = {"file": name, "sha256": sha, "source": src.name,
                                          "identity": hash_obj(training_identity(cfg, method, ds.num_classes, code=False)),
                                          "method_code": method_code.code(method)}
        print(f"{method}: {assets / name} ({(assets / name).stat().st_size / 1e6:.1f} MB, sha256 {sha[:12]})")
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--methods", default=None, help="comma-separated (default: every built-in method)")
    a = p.parse_args()
    ship(a.preset, [m.strip() for m in a.methods.split(",")] if a.methods else builtin_methods())
