"""A deliberately degraded merge, for demonstrating `vltbench check`: the shipped (or given) merge
checkpoint with its learned merge table replaced by the table of a random, unlearned embedding.

    python scripts/degrade_merge.py --out /tmp/merge-random-table.safetensors
    vltbench eval --method merge --checkpoint /tmp/merge-random-table.safetensors --lengths 4,8,32 --results /tmp/degraded
    vltbench check --baseline results/reference --candidate /tmp/degraded

Everything else (tokenizer, DiT, latent statistics) is the trained model's: only which positions merge
at each K changes, so a regression flagged by `check` is the learned grouping's worth.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from vltbench.training.checkpoints import find_checkpoint
from vltbench.core.config import load_config
from vltbench.data import load_data
from vltbench.models.bundle import load_bundle, save_bundle

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--checkpoint", default=None, help="default: the shipped / cached merge checkpoint")
    p.add_argument("--seed", type=int, default=12345)
    a = p.parse_args()
    cfg = load_config(a.preset)
    ds = load_data(cfg.data)
    src = a.checkpoint or find_checkpoint(cfg, "merge", ds.num_classes)[0]
    bundle = load_bundle(src, cfg, "merge", ds.num_classes)
    m = bundle.method
    with torch.no_grad():
        g = torch.Generator().manual_seed(a.seed)
        m.embed.copy_(F.normalize(torch.randn(m.embed.shape, generator=g), dim=-1))
        m.freeze()  # the table of the random embedding
    sha = save_bundle(bundle, a.out)
    print(f"merge with a random table (seed {a.seed}) from {src}: {a.out} sha256 {sha[:12]}")
