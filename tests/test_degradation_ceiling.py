"""scripts/degradation_ceiling.py: held-out images degraded by known operations, scored as reconstructions are."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import shapes_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.ci
def test_degradations_are_scored_against_the_run_reference(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    data, out = tmp_path / "shapes", tmp_path / "rows.jsonl"
    shapes_folder(data, train=10, val=20)
    sets = ["eval.extractor=randproj", "eval.n_samples=40", "eval.n_ref=60", "eval.batch_size=20",
            "eval.kid_subset_size=20"]
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "degradation_ceiling.py"), "--data-root", str(data),
                        "--out", str(out), *(x for s in sets for x in ("--set", s))],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["degradation"]: row for row in map(json.loads, out.read_text().splitlines())}
    floor = rows.pop("none (the floor)")
    assert floor["psnr"] is None and floor["ssim"] == 1.0 and floor["n"] == 40
    blurs = [rows[f"blur sigma {s} px"] for s in ("0.5", "1", "1.5", "2", "3")]
    psnr = [b["psnr"] for b in blurs]
    assert all(a > b for a, b in zip(psnr, psnr[1:])), psnr  # more blur, further from the originals
    assert rows["4x down-up (bilinear)"]["psnr"] < rows["2x down-up (bilinear)"]["psnr"]
    for row in rows.values():
        assert row["ssim"] < 1.0 and row["fid"] > 0 and 0 <= row["precision"] <= 1
