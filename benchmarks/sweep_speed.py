"""Time of a sweep per cell and stage, and the model work it achieves against the measured matmul peak.

    python benchmarks/sweep_speed.py                       # the README main job, fresh results and cache
    python benchmarks/sweep_speed.py --results DIR         # read records already written (no run)
    python benchmarks/sweep_speed.py --set sampler.cfg_search=walk   # the same job with a walked guidance search

Runs `vltbench run --method merge --lengths 4,8,32` (or the given --method / --lengths / --preset) in a
fresh results folder and an empty cache (as a fresh clone would), measures the wall time, then prints
for every cell the seconds of each stage (the record's timing) and, for the sampling stages, GFLOP/s:
the fvcore count of what the protocol samples (2 FLOPs per multiply-add: the PERFORMANCE convention)
over the stage's seconds, and the executed count, less the unguided steps that a batched search and
the guided pass share (vltbench.models.flow.cfg_start). Peak: the best 1024^2 fp32 matmul, measured
in this process with the same threads, before and after the run (the machine may be shared: both are
printed). Numbers are printed, never asserted.
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

import torch

from vltbench.evaluation.dry_run import measured_matmul_gflops
from vltbench.models.flow import cfg_start, sampling_nfe


def stage_work(rec: dict, cfg: dict) -> dict:
    """{stage: (protocol GFLOPs, executed GFLOPs)} in FLOPs (2 x fvcore multiply-adds) x 1e-9."""
    c, s, e = rec["compute"], cfg["sampler"], cfg["eval"]
    dit, dec, enc = c["dit_forward_gflops"], c["decoder_gflops"], c["encoder_gflops"]
    steps, shift, interval = s["steps"], s["shift"], s["cfg_interval"]
    i0 = cfg_start(steps, shift, interval)

    def one(w):
        return dit * sampling_nfe(steps, shift, w, interval)[0] + dec

    g, n = rec["guidance"], e["n_samples"]
    out = {}
    if g.get("protocol") == "search":
        grid, added = [float(w) for w in g["grid"]], [float(w) for w in g.get("added") or []]
        base = [w for w in grid if w not in added]
        proto = s["select_samples"] * sum(one(w) for w in grid)
        passes = len(g.get("walk_steps") or [base])  # each pass over the grid shares its prefix steps
        out["guidance_search_s"] = (2 * proto, 2 * (proto - s["select_samples"] * dit * i0 * (len(base) - passes)))
    w = float(g["scale"])
    out["unguided_s"] = (2 * n * one(1.0),) * 2  # absent at K = N: that cell reads the full-length set
    if w != 1.0:  # the guided pass resumes the unguided pass's steps before the interval, if the cell ran it
        shared = dit * i0 if "unguided_s" in rec["timing"] else 0.0
        out["guided_s"] = (2 * n * one(w), 2 * n * (one(w) - shared))
    n_rec = rec["identity"]["metric_spec"]["n_recon"]
    out["recon_s"] = (2 * n_rec * (enc + dec),) * 2
    return out


def report(results: Path, peak: float, wall: float | None) -> None:
    recs = sorted((json.loads(p.read_text()) for p in results.glob("*/*.json")),
                  key=lambda r: (r["identity"]["method"], r["identity"]["length"]))
    print(f"matmul peak {peak:.1f} GFLOP/s ({torch.get_num_threads()} threads)"
          + (f"; wall time of the run {wall:.1f} s" if wall is not None else ""))
    for r in recs:
        t, m = r["timing"], r["metrics"]
        work = stage_work(r, r["config"])
        print(f"\n{r['identity']['method']} K={r['identity']['length']}: total {t['total_s']:.1f} s, "
              f"gfid {m['gfid']:.4f}, scale {r['guidance']['scale']:g}")
        for stage, sec in t.items():
            if stage == "total_s" or stage.startswith("train_"):
                continue
            line = f"  {stage:24s} {sec:7.2f} s"
            if stage in work and sec > 0:
                proto, done = work[stage]
                line += (f"  protocol {proto:8.1f} GFLOP = {proto / sec:6.1f} GFLOP/s ({100 * proto / sec / peak:4.0f}% "
                         f"of peak); executed {done:8.1f} GFLOP = {done / sec:6.1f} GFLOP/s")
            print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="merge")
    ap.add_argument("--lengths", default="4,8,32")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--results", type=Path, help="read these records instead of running")
    ap.add_argument("--set", action="append", default=[], help="section.key=value for the run, as the CLI's --set")
    args = ap.parse_args()
    peak_before = measured_matmul_gflops()
    wall = None
    if args.results is None:
        tmp = Path(tempfile.mkdtemp(prefix="vltbench-speed-"))
        args.results = tmp / "results"
        env = {**os.environ, "VLTBENCH_CACHE": str(tmp / "cache")}
        cmd = [sys.executable, "-m", "vltbench", "run", "--method", args.method, "--lengths", args.lengths,
               "--preset", args.preset, "--results", str(args.results), "-q", *(x for kv in args.set for x in ("--set", kv))]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        print(f"ran: {' '.join(cmd[1:])} (fresh cache {tmp / 'cache'}); load average {os.getloadavg()[0]:.2f}")
    peak = max(peak_before, measured_matmul_gflops())
    report(args.results, peak, wall)


if __name__ == "__main__":
    main()
