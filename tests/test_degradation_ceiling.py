"""scripts/degradation_ceiling.py: held-out images degraded by known operations, scored as reconstructions are."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import shapes_folder

BANDS = ("1-2", "3-4", "5-8", "9-16")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.ci
def test_degradations_are_scored_against_the_run_reference(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    data, out = tmp_path / "shapes", tmp_path / "rows.jsonl"
    shapes_folder(data, train=10, val=20)
    sets = ["eval.extractor=randproj", "eval.n_samples=40", "eval.n_ref=60", "eval.batch_size=20",
            "eval.kid_subset_size=20"]
    state = tiny_tokenizer_state(data, tmp_path / "cache")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "degradation_ceiling.py"), "--data-root", str(data),
                        "--out", str(out), *(x for s in sets for x in ("--set", s)), "--state", str(state)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["degradation"]: row for row in map(json.loads, out.read_text().splitlines())}
    floor = rows.pop("none (the floor)")
    assert floor["psnr"] is None and floor["ssim"] == 1.0 and floor["n"] == 40
    assert all(floor[f"power_{b}"] == floor[f"coherence_{b}"] == 1.0 for b in BANDS), floor
    tok = [rows.pop(name) for name in list(rows) if name.startswith("tail-drop tokenizer at K = N")]
    assert len(tok) == 1 and tok[0]["psnr"] < 40 and tok[0]["patch_edge_mse"] > 0, tok  # 3 steps: far from exact
    blurs = [rows[f"blur sigma {s} px"] for s in ("0.5", "1", "1.5", "2", "3")]
    psnr = [b["psnr"] for b in blurs]
    assert all(a > b for a, b in zip(psnr, psnr[1:])), psnr  # more blur, further from the originals
    assert rows["4x down-up (bilinear)"]["psnr"] < rows["2x down-up (bilinear)"]["psnr"]
    for row in rows.values():
        assert row["ssim"] < 1.0 and row["fid"] > 0 and 0 <= row["precision"] <= 1
    # A blur is a low-pass filter: less power in 3-4 cycles than in 1-2 and the less the larger sigma, coherent at
    # low frequency (reflect padding keeps it under 1). Above, uint8 rounding's noise floor breaks the order.
    for b in blurs:
        assert b["power_1-2"] > b["power_3-4"] and b["coherence_1-2"] > 0.95, b
    power = [b["power_3-4"] for b in blurs]
    assert all(p > q for p, q in zip(power, power[1:])), power


def tiny_tokenizer_state(data: Path, cache: Path) -> Path:
    """A finished (3-step) small-rgb tail-drop tokenizer state on `data`, written where a run writes it."""
    code = f"""
import os; os.environ["VLTBENCH_CACHE"] = {str(cache)!r}
from vltbench.core.config import load_config
from vltbench.data import load_data
from vltbench.models.bundle import build_bundle
from vltbench.training import loops
from vltbench.training.state import state_dir
cfg = load_config("small-rgb", overrides={{"data.root": {str(data)!r}, "tokenizer.steps": 3, "tokenizer.warm_start": 1,
                                         "tokenizer.warmup": 1}})
ds = load_data(cfg.data)
bundle = build_bundle(cfg, "tail-drop", ds.num_classes)
loops.train_tokenizer(bundle, ds, "cpu")
print(state_dir(bundle) / "tokenizer.safetensors")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    return Path(r.stdout.strip().splitlines()[-1])
