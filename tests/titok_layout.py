"""The fixtures of tests/fixtures/titok/<family> written in the releases' file layout (pytorch_model.bin: a
torch pickle of an OrderedDict of float32 tensors, as PyTorchModelHubMixin saves it; config.json: the
official config of the tiny model), for tests/test_official_titok.py and benchmarks/titok_official.py --dry-run.

The numbers come from the official code (One-D-Piece / bytedance 1d-tokenizer at the commit in official.json)
built at a tiny size with seeded random weights (tests/fixtures/titok/make_fixtures.py, run outside the
project). The tiny ViT width (32) is not one of upstream's size names, so the heads come from TINY.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import load_file

FIX = Path(__file__).parent / "fixtures" / "titok"
FAMILIES = ("one-d-piece", "titok")
TINY = "tokenizer: {heads: 2}\n"


def meta(family: str) -> dict:
    return json.loads((FIX / family / "official.json").read_text())


def outputs(family: str) -> dict:
    return load_file(str(FIX / family / "outputs.safetensors"))


def weights(family: str) -> OrderedDict:
    return OrderedDict((k, v.float()) for k, v in sorted(load_file(str(FIX / family / "weights.safetensors")).items()))


def write_official_files(tmp: Path, family: str, sd: dict | None = None) -> dict:
    """pytorch_model.bin + config.json (the official config of the tiny model, without the ViT size names,
    which name upstream's sizes, not the tiny one) + the tiny vltbench config; returns their paths."""
    tmp.mkdir(parents=True, exist_ok=True)
    w = tmp / "pytorch_model.bin"
    torch.save(OrderedDict(weights(family) if sd is None else sd), w)
    off = json.loads(json.dumps(meta(family)["official_config"]))
    for k in ("vit_enc_model_size", "vit_dec_model_size"):
        off["model"]["vq_model"].pop(k)
    c = tmp / "config.json"
    c.write_text(json.dumps(off))
    tiny = tmp / "tiny.yaml"
    tiny.write_text(TINY)
    return {"weights": w, "official_config": c, "config": tiny}


def real_size_weights(family: str, variant: str) -> OrderedDict:
    """Zero tensors with the real release's key names and shapes (official.json real_size_keys)."""
    return OrderedDict((k, torch.zeros(s)) for k, s in sorted(meta(family)["real_size_keys"][variant].items()))
