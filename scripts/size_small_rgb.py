"""Size a tokenizer recipe for small RGB folders (issue 30): train the tokenizer stage of each method on a folder of
RGB images under --set overrides and measure whether it reconstructs and uses its length.

    python scripts/make_rgb_folder.py --out data/shapes
    python scripts/size_small_rgb.py --root data/shapes --methods tail-drop --tag C-w96-d16 \
        --set tokenizer.width=96 --set tokenizer.enc_depth=3 --set tokenizer.dec_depth=3 \
        --out results/small_rgb/sizing.jsonl

Per (tag, method): train seconds, PSNR of the held-out images (the records' rFID set) reconstructed at
K = N/8, N/4 and N, merge's mean token cosine inside one K = N/8 cluster, and Inception FID at the
records' n (500) of those reconstructions at K = N (the tokenizer ceiling), of the same images through the
untrained tokenizer (step 0), and of the held-out real images themselves (the floor), all against the
test reference. The tokenizer stage is the real one (`train.train_tokenizer`), so a later `vltbench run`
with the same config reuses its training state. One JSON line per tokenizer is appended to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from vltbench.core.config import load_config
from vltbench.core.device import to_float, to_uint8
from vltbench.data import load_data
from vltbench.evaluation.extractors.build import extractor_for
from vltbench.evaluation.metrics import ReconMeter, compute_image_metrics
from vltbench.evaluation.references import RealSets
from vltbench.models.bundle import build_bundle
from vltbench.training import loops as train
from vltbench.training.state import state_label

# The candidate RGB recipe over the tiny preset (every row of results/small_rgb/sizing.jsonl starts here,
# then applies its own --set values): 32 px, 64 patches, N = 32 tokens.
BASE = {"data.image_size": 32, "data.flip": True, "tokenizer.patch_size": 4, "tokenizer.n_tokens": 32,
        "tokenizer.latent_dim": 16, "tokenizer.width": 128, "tokenizer.enc_depth": 4, "tokenizer.dec_depth": 4,
        "tokenizer.lr": 1.0e-3}


@torch.no_grad()
def measure(bundle, held, lengths: list[int]) -> tuple[dict, list[torch.Tensor]]:
    tok, m = bundle.tokenizer.eval(), bundle.method.eval()
    meters = {k: ReconMeter(lpips=False) for k in lengths}
    zs, full = [], []
    for x in held.batches(100):
        z = tok.encode(to_float(x))
        zs.append(z)
        for k in lengths:
            rec = to_uint8(tok.decode(m.reconstruct_tokens(z, k)))
            meters[k].update(x, rec)
            if k == lengths[-1]:
                full.append(rec)
    out = {f"psnr_{k}": round(meters[k].result()["psnr"], 3) for k in lengths}
    if bundle.method_name in ("merge",):
        z = F.normalize(torch.cat(zs), dim=-1)
        labels = m.table[lengths[0] - 1]
        across = labels[:, None] != labels[None, :]
        same = ~across & ~torch.eye(len(labels), dtype=torch.bool)
        # raw (the gate's), then after removing the held-out set's mean token (a direction every token of
        # every image shares): tells a shared offset from merged tokens collapsing onto each other
        for suffix, t in (("", z), ("_centred", F.normalize(z - z.mean((0, 1)), dim=-1))):
            cos = t @ t.transpose(1, 2)
            out[f"cos_in_cluster{suffix}"] = round(float(cos[:, same].mean()), 4)
            out[f"cos_across{suffix}"] = round(float(cos[:, across].mean()), 4)
    return out, full


def fid(extractor, ref, batches) -> dict:
    r = compute_image_metrics(extractor, None, batches, ref=ref, kid_subset_size=100, fid_method="eigh",
                              fid_bootstrap=0)
    return {"fid": round(r["fid"], 2), "kid": round(r["kid"], 4), "precision": round(r["precision"], 3)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="folder dataset root")
    p.add_argument("--methods", default="tail-drop,merge")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--tag", required=True, help="name of this configuration in the output")
    p.add_argument("--set", action="append", default=[], help="section.key=value, as the CLI's --set")
    p.add_argument("--data-name", default="folder")
    p.add_argument("--no-fid", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/small_rgb/sizing.jsonl")
    p.add_argument("--init-from", help="a finished tokenizer train-state (.safetensors) whose tokenizer (and method) "
                   "weights this training starts from (sets tokenizer.init_from): a fine-tuning stage over an earlier row")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sets = {"data.name": a.data_name, **BASE, **{k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in a.set)}}
    if a.init_from:
        sets["tokenizer.init_from"] = a.init_from
    if a.data_name == "folder":
        sets["data.root"] = a.root
    for method in a.methods.split(","):
        cfg = load_config(a.preset, overrides=sets)
        ds = load_data(cfg.data)
        n = cfg.tokenizer.n_tokens
        ext = None if a.no_fid else extractor_for(cfg)
        real = RealSets(cfg, ds, ext)
        bundle = build_bundle(cfg, method, ds.num_classes)
        row = {"tag": a.tag, "method": method, "data": a.data_name, "sets": a.set}
        if ext is not None:
            _, untrained = measure(bundle, real.held_out, [n])
            row["fid_step0"] = fid(ext, real.reference, untrained)["fid"]
            row["real_floor"] = fid(ext, real.reference, real.held_out.batches(100))
        if a.init_from:  # training loads it, after step 0 is measured: fid_step0 stays the untrained tokenizer's
            row["init_from"] = state_label(Path(a.init_from))
        t0 = time.perf_counter()
        train.train_tokenizer(bundle, ds, "cpu")
        row["train_s"] = round(time.perf_counter() - t0, 1)
        psnr, full = measure(bundle, real.held_out, [n // 8, n // 4, n])
        row.update(psnr, gap_db=round(psnr[f"psnr_{n}"] - psnr[f"psnr_{n // 8}"], 2))
        if ext is not None:
            row["ceiling"] = fid(ext, real.reference, full)
            row["ceiling_over_floor"] = round(row["ceiling"]["fid"] / row["real_floor"]["fid"], 2)
            row["ceiling_over_step0"] = round(row["ceiling"]["fid"] / row["fid_step0"], 3)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
