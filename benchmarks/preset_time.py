"""Wall time of one preset, per method and stage, on this machine: train (tokenizer, DiT) then evaluate.

    python scripts/make_rgb_folder.py --out data/shapes
    python benchmarks/preset_time.py --preset small-rgb --data-root data/shapes --methods tail-drop,merge

For each method: `vltbench train` into a checkpoint of its own, then `vltbench run --checkpoint` on it over
--lengths, each timed by the wall clock. The tokenizer and DiT seconds are the ones training measured
(the checkpoint's metadata). With --cache DIR, training states already in that cache are reused (a
resumed or finished stage reports the seconds it took when it ran, marked "from state"); without it the
cache is fresh, as a new user's would be. Stage seconds come from the loss logs training writes. Load average and matmul peak are printed beside the times
(the machine may be shared). Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors import safe_open

from vltbench.evaluation.dry_run import measured_matmul_gflops


def timed(cmd: list[str], env: dict, log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "a") as f:
        subprocess.run(cmd, env=env, check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0


def training_seconds(ckpt: Path, log_text: str) -> dict:
    """Seconds per training stage: the last elapsed_s of each loss log beside the checkpoint
    (<ckpt>.<stage>.losses.jsonl); a tokenizer reused from a finished state has no log there, and reports
    the elapsed_s that state stored when it was trained."""
    out = {}
    for log in sorted(ckpt.parent.glob(ckpt.name + ".*.losses.jsonl")):
        lines = log.read_text().strip().splitlines()
        if lines:
            out[log.name[len(ckpt.name) + 1:-len(".losses.jsonl")]] = json.loads(lines[-1])["elapsed_s"]
    reused = re.search(r"tokenizer already trained \(state (.+?)\)", log_text)
    if "tokenizer" not in out and reused and Path(reused.group(1)).is_file():  # a written checkpoint consumes it
        with safe_open(reused.group(1), "pt") as f:
            out["tokenizer (from state)"] = json.loads(f.metadata()["json"])["extra"]["elapsed_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small-rgb")
    ap.add_argument("--methods", default="tail-drop,merge,nested-dropout")
    ap.add_argument("--lengths", default="4,8,32")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--cache", type=Path, help="reuse the training states of this cache (default: a fresh one)")
    ap.add_argument("--set", action="append", default=[], help="section.key=value, passed on to train and run")
    ap.add_argument("--out", type=Path, help="folder for checkpoints, records and logs (default: a temp folder)")
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="vltbench-preset-"))
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VLTBENCH_CACHE": str(a.cache or out / "cache")}
    sets = [x for kv in a.set for x in ("--set", kv)]
    common = ["--preset", a.preset, "--data-root", a.data_root, *sets]
    print(f"preset {a.preset} on {a.data_root}, K = {a.lengths}; cache {env['VLTBENCH_CACHE']}"
          f"{' (reused)' if a.cache else ' (fresh)'}; logs and records in {out}")
    print(f"matmul peak {measured_matmul_gflops():.1f} GFLOP/s; load average {os.getloadavg()[0]:.2f}", flush=True)
    for m in a.methods.split(","):
        ckpt, log = out / f"{m}.safetensors", out / f"{m}.log"
        train_wall = timed([sys.executable, "-m", "vltbench", "train", "--method", m, "--out", str(ckpt), *common],
                           env, log)
        stages = training_seconds(ckpt, log.read_text())
        eval_wall = timed([sys.executable, "-m", "vltbench", "run", "--method", m, "--lengths", a.lengths,
                           "--checkpoint", str(ckpt), "--results", str(out / "results"), *common], env, log)
        parts = ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(stages.items()))
        if not any(k.startswith("tokenizer") for k in stages):
            parts += ", tokenizer reused (trained earlier, time unknown here)"
        print(f"{m}: train wall {train_wall / 60:.1f} min ({parts}), "
              f"evaluate K = {a.lengths} {eval_wall / 60:.1f} min; load average {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
