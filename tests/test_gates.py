"""scripts/tiny_gates.py on the committed reference results: every gate measured, numbers from the records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vltbench.evaluation.store import load_frame

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "reference"
# a script's own folder heads sys.path, so without this it imports whichever vltbench is installed
THIS_CHECKOUT = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.mark.skipif(not RESULTS.is_dir(), reason="no committed results/reference in this checkout")
def test_gates_report_matches_the_records(tmp_path):
    out = tmp_path / "GATES.md"
    p = subprocess.run([sys.executable, "scripts/tiny_gates.py", "--results", "results/reference", "--out", str(out),
                        "--check-degraded", "results/check/degraded.json", "--check-rerun", "results/check/rerun.json",
                        "--folder-log", "results/check/folder-run.txt", "--sizing",
                        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "results" / "warm_start").glob("sizing-*.jsonl"))],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, env=THIS_CHECKOUT)
    assert p.returncode == 0, p.stderr[-3000:]
    text = out.read_text()
    for n in range(1, 10):
        assert f"## {n}. " in text
    df = load_frame(RESULTS)
    floor = df["real_fid"].mean()
    assert f"{floor:.2f} ± " in text  # the floor as the records hold it
    # each method's class_acc at K = N, and the degraded merge flagged while the rerun passes
    for m, v in df[df["length"] == df["n_tokens"]].groupby("method")["class_acc"].mean().items():
        assert f"| {m} | {v:.3f}" in text
    assert "FAILED (regression flagged)" in text and "**passed**" in text
    # the committed GATES.md is this script's output for the committed records
    assert (ROOT / "results" / "GATES.md").read_text().splitlines()[2:] == text.splitlines()[2:]


def test_degraded_merge_has_a_valid_random_table(tmp_path, monkeypatch):
    """scripts/degrade_merge.py: the shipped merge with another (random) table, everything else unchanged."""
    import torch

    from vltbench.training.checkpoints import find_checkpoint
    from vltbench.core.config import load_config
    from vltbench.models.bundle import load_bundle

    out = tmp_path / "degraded.safetensors"
    p = subprocess.run([sys.executable, "scripts/degrade_merge.py", "--out", str(out)], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    cfg = load_config("tiny")
    shipped = load_bundle(find_checkpoint(cfg, "merge", 10)[0], cfg, "merge", 10)
    bad = load_bundle(out, cfg, "merge", 10)
    bad.method.check_table()  # still nested partitions into 1..N clusters
    assert not torch.equal(bad.method.table, shipped.method.table)
    assert torch.equal(bad.method.table[-1], shipped.method.table[-1])  # K = N: nothing merges either way
    for a, b in zip(bad.tokenizer.state_dict().values(), shipped.tokenizer.state_dict().values()):
        assert torch.equal(a.float(), b.float())
