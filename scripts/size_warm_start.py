"""Size the shared warm start (tokenizer.warm_start, issue 20): train the tokenizer stage of every method
at several warm-start lengths and training seeds, and measure whether each tokenizer uses its length.

    python scripts/size_warm_start.py --warm 0,500,1000,1500 --seeds 0 --out results/warm_start/sizing.jsonl

Per (warm, seed, method): PSNR of the held-out digits (the records' rFD set: 500 val digits outside the
reference) reconstructed at K = N/8, N/4 and N, and for merge the mean cosine of the encoder's tokens
inside one K = N/8 cluster (the paper: 0.67 at N/8) vs across clusters. The tokenizer stage is the real
one (`train.train_tokenizer` with the preset and --set overrides), so its cached training state is
reused by a later `vltbench train` of the same config and seed, and the warm stage is shared by methods
with the same backbone. One JSON line per tokenizer is appended to --out; rows already there are skipped.
Run one process per seed to use two cores (each single-threaded).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vltbench.training import loops as train
from vltbench.core.config import load_config
from vltbench.data import load_data
from vltbench.core.device import to_float, to_uint8
from vltbench.evaluation.metrics import ReconMeter
from vltbench.models.bundle import build_bundle
from vltbench.evaluation.references import RealSets

METHODS = ["tail-drop", "merge", "tome", "nested-dropout"]  # tail-drop first: it trains the shared warm stage


@torch.no_grad()
def measure(bundle, held, lengths: list[int]) -> dict:
    tok, m = bundle.tokenizer.eval(), bundle.method.eval()
    meters = {k: ReconMeter(lpips=False) for k in lengths}
    zs = []
    for x in held.batches(100):
        z = tok.encode(to_float(x))
        zs.append(z)
        for k in lengths:
            meters[k].update(x, to_uint8(tok.decode(m.reconstruct_tokens(z, k))))
    out = {f"psnr_{k}": meters[k].result()["psnr"] for k in lengths}
    if bundle.method_name == "merge":
        z = F.normalize(torch.cat(zs), dim=-1)
        cos = z @ z.transpose(1, 2)  # (B, N, N)
        labels = m.table[lengths[0] - 1]
        same = (labels[:, None] == labels[None, :]) & ~torch.eye(len(labels), dtype=torch.bool)
        out["cos_in_cluster"] = float(cos[:, same].mean())
        out["cos_across"] = float(cos[:, labels[:, None] != labels[None, :]].mean())
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warm", default="0,500,1000,1500")
    p.add_argument("--seeds", default="0")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--preset", default="tiny")
    p.add_argument("--set", action="append", default=[], help="section.key=value, as the CLI's --set")
    p.add_argument("--out", default="results/warm_start/sizing.jsonl")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["warm_start"], r["seed"], r["method"]) for r in map(json.loads, out.read_text().splitlines())} \
        if out.is_file() else set()
    sets = dict(kv.split("=", 1) for kv in a.set)
    for warm in map(int, a.warm.split(",")):
        for seed in map(int, a.seeds.split(",")):
            for method in a.methods.split(","):
                if (warm, seed, method) in done:
                    continue
                cfg = load_config(a.preset, overrides={**sets, "tokenizer.warm_start": warm, "seed": seed})
                ds = load_data(cfg.data)
                n = cfg.tokenizer.n_tokens
                bundle = build_bundle(cfg, method, ds.num_classes)
                t0 = time.perf_counter()
                train.train_tokenizer(bundle, ds, "cpu")
                row = {"warm_start": warm, "seed": seed, "method": method, "steps": cfg.tokenizer.steps,
                       "train_s": round(time.perf_counter() - t0, 1),
                       **measure(bundle, RealSets(cfg, ds, None).held_out, [n // 8, n // 4, n])}
                with open(out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
