"""The fixtures of tests/fixtures/lgm written in the official LGM release's file layout (tokenizer.pt: a
torch pickle {model, optimizer, discriminator, optimizer_disc, steps, args, ema} whose args Namespace holds
ruamel.yaml ScalarFloats, as tokenizer/train_tokenizer.py writes it; xl.pth: {model, model_ema};
latents_stats.pt: {mean, std}), for tests/test_official_lgm.py and benchmarks/lgm_official.py --dry-run.

The fixtures' numbers come from the official code (github.com/movinghoon/lgm, commit in official.json)
built at a tiny size with seeded random weights; tiny.yaml is the matching configuration over the
lgm-official-xl preset.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import load_file

FIX = Path(__file__).parent / "fixtures" / "lgm"
META = json.loads((FIX / "official.json").read_text())
OUT = load_file(str(FIX / "outputs.safetensors"))

TINY = """
data: {image_size: 32}
tokenizer: {patch_size: 8, n_tokens: 32, latent_dim: 8, width: 64, enc_depth: 2, dec_depth: 2, heads: 2,
            quantizer: {codebook_size: 64}}
dit: {size: null, depth: 2, width: 64, heads: 2}
lengths: {train: [4, 8, 16, 32], probs: [0.25, 0.25, 0.25, 0.25], dit_cycle: [16, 8]}
methods: {merge: {embed_dim: 16}}
sampler: {steps: 8, shift: 0.2, cfg_interval: [0.15, 1.0], cfg_scale: 4.0, cfg_scale_per_length: null}
"""
RUAMEL = ("ruamel", "ruamel.yaml", "ruamel.yaml.scalarfloat")


def _weights(name):
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(FIX / name)).items()}


def _save_args_pickle(obj, path: Path) -> None:
    """torch.save with the args' floats as ruamel.yaml ScalarFloats (the real class when ruamel is installed,
    else a float subclass pickled under its name: the pickle then names the same global as the release's)."""
    try:
        from ruamel.yaml.scalarfloat import ScalarFloat
        saved = None
    except ImportError:
        saved = {name: sys.modules.get(name) for name in RUAMEL}
        for name in RUAMEL:
            sys.modules[name] = types.ModuleType(name)
        ScalarFloat = type("ScalarFloat", (float,), {"__module__": "ruamel.yaml.scalarfloat"})
        sys.modules["ruamel.yaml.scalarfloat"].ScalarFloat = ScalarFloat
    try:
        args = argparse.Namespace()
        for k, (v, typ) in META["tokenizer_args"].items():
            setattr(args, k, ScalarFloat(v) if typ.endswith("ScalarFloat") else v)
        torch.save(dict(obj, args=args), path)
    finally:
        for name, mod in (saved or {}).items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def write_official_files(folder: Path) -> dict:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ema = _weights("tokenizer_ema.safetensors")
    for k, shape in META["tokenizer_training_only_keys"].items():  # REPA / DINO heads: present, never used
        ema[k] = torch.zeros(shape)
    opt = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(4)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}
    _save_args_pickle({"model": dict(ema), "optimizer": opt, "discriminator": {"conv.weight": torch.zeros(2, 2)},
                       "optimizer_disc": opt, "steps": 250000, "ema": ema}, folder / "tokenizer.pt")
    gen = _weights("generator.safetensors")
    torch.save({"model": gen, "model_ema": dict(gen)}, folder / "xl.pth")
    g = torch.Generator().manual_seed(7)
    stats = {"mean": torch.randn(1, 1, 8, generator=g) * 0.1, "std": torch.rand(1, 1, 8, generator=g) + 0.5}
    torch.save(stats, folder / "latents_stats.pt")
    (folder / "tiny.yaml").write_text(TINY)
    return {"tokenizer": folder / "tokenizer.pt", "generator": folder / "xl.pth",
            "latent_stats": folder / "latents_stats.pt", "config": folder / "tiny.yaml", "stats": stats}
