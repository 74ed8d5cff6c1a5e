"""benchmarks/gpu_check.py (issue 15): its CPU dry run exercises every section of the GPU check."""

import sys
from pathlib import Path

from helpers import run_benchmark_dry_run

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run(tmp_path):
    report, _ = run_benchmark_dry_run("gpu_check", tmp_path, timeout=240)
    assert report["dry_run"] and set(report["sections"]) == {"train", "sample", "inception", "sweep", "flops"}
    s = report["sections"]
    assert len(s["train"]["rows"]) == 8 and all(row["images_per_s"] > 0 for row in s["train"]["rows"])
    assert all(row["finite"] for row in s["sample"]["rows"])
    assert s["inception"]["finite"]
    assert s["sweep"]["returncode"] == 0 and len(s["sweep"]["records"]) == 2
    # vltbench's fvcore count of the lightning generator equals the official architecture's, layer by layer
    for row in s["flops"]["rows"]:
        assert row["arch"] == "lightning" and abs(row["ratio"] - 1) < 1e-9, row


def test_official_count_matches_ours_at_paper_scale_formula():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_check import official_lightning_gflops
    # LightningDiT-XL at K = N = 256 with the merged positional embedding (P^T p, 256 x 256 x 1152)
    assert abs(official_lightning_gflops(256, 256, 1152, 28) - 118.7016) < 1e-3
    assert abs(official_lightning_gflops(256, 256, 1152, 28, merged_pos=False) - 118.6262) < 1e-3
