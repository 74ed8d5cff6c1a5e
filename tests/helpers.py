"""Shared test helpers: run the real CLI in a subprocess, the tiny test config, a smaller tiny model,
a cell identity for hand-built records."""

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent
TINY = str(TESTS / "tiny_test.yaml")


def run_cli(*args, env=None, cwd=None, timeout=600):
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "1")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "vltbench", *map(str, args)], capture_output=True, text=True,
                          env=e, cwd=cwd, timeout=timeout)


# the tiny preset shrunk further for in-process model tests (seconds, not minutes)
SMALL = {"tokenizer.width": 32, "tokenizer.heads": 2, "tokenizer.enc_depth": 1, "tokenizer.dec_depth": 1,
         "dit.width": 32, "dit.heads": 2, "dit.depth": 2}


def identity(method="merge", length=8, seed=0, n_samples=1000, ckpt="c"):
    """The identity of a result cell, for records built by hand (store / report / check tests)."""
    return {"method": method, "checkpoint_hash": ckpt * 64, "length": length, "n_tokens": 32,
            "generator": "joint", "seed": seed, "preset": "tiny",
            "sampler": {"steps": 25, "shift": 0.3, "cfg_scale": 1.5, "cfg_interval": [0.15, 1.0]},
            "dataset": {"name": "embedded", "manifest_hash": "m" * 64, "image_size": 32},
            "metric_spec": {"extractor_id": "inception-v3-tf2015:sha=abc", "label": "FID",
                            "n_samples": n_samples, "n_ref": 2000, "ref_split": "val",
                            "kid_subset_size": 100, "pr_k": 3}}
