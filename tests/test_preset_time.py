"""benchmarks/preset_time.py on a small preset run for real: it trains and evaluates each method through the
CLI and prints the wall time with the stage seconds read from the loss logs (once printed empty)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import shapes_folder

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"tokenizer.width": 32, "tokenizer.heads": 2, "tokenizer.enc_depth": 1, "tokenizer.dec_depth": 1,
         "tokenizer.steps": 6, "tokenizer.warm_start": 2, "tokenizer.batch_size": 16, "dit.width": 32,
         "dit.heads": 2, "dit.depth": 2, "dit.steps": 4, "dit.batch_size": 16, "sampler.steps": 5,
         "sampler.cfg_scales": "[1.0,2.0]", "sampler.select_samples": 16, "eval.extractor": "randproj",
         "eval.n_samples": 32, "eval.n_ref": 48, "eval.batch_size": 32, "eval.kid_subset_size": 16}


@pytest.mark.slow
@pytest.mark.ci
def test_preset_time_prints_each_stage_of_a_real_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    data, out = tmp_path / "shapes", tmp_path / "out"
    shapes_folder(data, train=20, val=20)
    sets = [x for k, v in SMALL.items() for x in ("--set", f"{k}={v}")]
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "preset_time.py"), "--preset", "small-rgb",
                        "--data-root", str(data), "--methods", "tail-drop", "--lengths", "4,32", "--out", str(out),
                        *sets], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    line = next(s for s in r.stdout.splitlines() if s.startswith("tail-drop:"))
    stages = dict(re.findall(r"([\w-]+) ([\d.]+) min", line.split("), evaluate")[0]))
    assert {"tokenizer", "dit-joint"} <= stages.keys(), line  # the stage seconds from the loss logs
    assert re.search(r"evaluate K = 4,32 [\d.]+ min", line), line
    records = [json.loads(p.read_text()) for p in (out / "results").glob("*/*.json")]
    assert sorted(rec["identity"]["length"] for rec in records) == [4, 32]
