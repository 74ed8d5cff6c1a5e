"""Scale-out throughput: sampling + feature extraction (images/s) and training (steps/s), with 1, 2, ...
processes under torchrun, and the speed-up over one process.

Each process count is a fresh `torchrun --standalone --nproc_per_node P` of this script in worker
mode; rank 0 reports the wall time between two barriers, so the number includes the collectives
(feature gather, gradient all-reduce). Models are freshly initialised (throughput does not depend
on training). On CPU give each process one thread (--threads); on GPUs use --device cuda and one
process per GPU.

    python benchmarks/bench_dist.py [--procs 1,2] [--n-samples 256] [--steps 50] [--method merge]
        [--preset tiny] [--config FILE] [--set key=value ...] [--extractor randproj|inception] [--device cpu]

Smoke run (seconds): python benchmarks/bench_dist.py --config tests/tiny_test.yaml --n-samples 32 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(a) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    from vltbench.api import parse_sets
    from vltbench.core import dist
    from vltbench.core.config import load_config
    from vltbench.core.device import resolve_device
    from vltbench.data import load_data
    from vltbench.evaluation.extractors import get_extractor
    from vltbench.evaluation.generate import generate_batches, shard_ids
    from vltbench.models.bundle import build_bundle
    from vltbench.training.loops import train_dits, train_tokenizer

    overrides = parse_sets(a.set)
    overrides.update({"tokenizer.steps": a.steps, "tokenizer.warm_start": a.steps // 3, "dit.steps": a.steps, "tokenizer.ckpt_every": 0,
                      "dit.ckpt_every": 0, "device": a.device})
    cfg = load_config(a.preset, a.config, overrides)
    device = resolve_device(cfg.device)
    dist.init(device)
    with dist.main_first():
        ds = load_data(cfg.data)
    out = {"procs": dist.world_size()}

    # sampling + feature extraction: each rank its whole batches, features gathered in index order
    bundle = build_bundle(cfg, a.method, ds.num_classes)
    bundle.method.freeze()
    bundle.dits["joint"] = bundle.new_dit().eval()
    d = cfg.tokenizer.latent_dim
    bundle.latent_mean, bundle.latent_std = torch.zeros(d), torch.ones(d)
    bundle.to(device)
    extractor = get_extractor(a.extractor, device=device)
    k = cfg.lengths.train[0]
    bs = cfg.eval.batch_size
    ids = shard_ids(a.n_samples, bs)
    dist.barrier()
    t0 = time.perf_counter()
    feats = [extractor(b)["features"] for b in generate_batches(bundle, k, a.n_samples, 0, cfg.sampler,
                                                               cfg.sampler.cfg_scale, bs, ids=ids)]
    allf = dist.gather_rows(np.concatenate(feats) if feats else None, ids)
    dist.barrier()
    dt = time.perf_counter() - t0
    if dist.is_main():
        assert len(allf) == a.n_samples
    out["sample_images_per_s"] = a.n_samples / dt

    # training steps/s, tokenizer and DiT (global batch = the config's batch_size)
    bundle = build_bundle(cfg, a.method, ds.num_classes)
    timing = train_tokenizer(bundle, ds, device)
    timing.update(train_dits(bundle, ds, device))
    out["tokenizer_steps_per_s"] = a.steps / timing["tokenizer_s"]
    out["dit_steps_per_s"] = a.steps / timing["dit_joint_s"]
    out["tokenizer_batch"], out["dit_batch"] = cfg.tokenizer.batch_size, cfg.dit.batch_size
    if dist.is_main():
        Path(a.out).write_text(json.dumps(out))
    dist.barrier()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", default="1,2", help="process counts to compare, e.g. 1,2,4")
    ap.add_argument("--n-samples", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50, help="training steps per stage")
    ap.add_argument("--method", default="merge")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--extractor", default="randproj")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "VLTBENCH_CACHE": os.environ.get("VLTBENCH_CACHE", tmp)}
        for p in [int(x) for x in a.procs.split(",")]:
            out = Path(tmp) / f"p{p}.json"
            args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={p}",
                    __file__, "--worker", "--out", str(out), "--n-samples", str(a.n_samples), "--steps", str(a.steps),
                    "--method", a.method, "--preset", a.preset, "--extractor", a.extractor, "--device", a.device,
                    "--threads", str(a.threads), *sum((["--set", s] for s in a.set), [])]
            if a.config:
                args += ["--config", a.config]
            r = subprocess.run(args, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"{p} processes failed:\n{r.stderr[-3000:]}")
            rows.append(json.loads(out.read_text()))
    base = rows[0]
    cols = [("sample_images_per_s", "sampling+features img/s"), ("tokenizer_steps_per_s", "tokenizer steps/s"),
            ("dit_steps_per_s", "DiT steps/s")]
    print(f"method {a.method}, preset {a.preset}, device {a.device}, {a.n_samples} samples, {a.steps} steps per stage, "
          f"global batch tokenizer {base['tokenizer_batch']} / DiT {base['dit_batch']}, {a.threads} thread(s) per process")
    print("| procs | " + " | ".join(f"{name} | speed-up" for _, name in cols) + " |")
    print("|---:|" + "---:|---:|" * len(cols))
    for r in rows:
        cells = [f"{r[key]:.3g} | {r[key] / base[key]:.2f}x" for key, _ in cols]
        print(f"| {r['procs']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
