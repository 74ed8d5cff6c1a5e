"""Smoke test of the performance benchmarks (vltbench.bench): they run in quick mode and write their
JSON files with the expected keys. Behaviour only: timings are never asserted."""

import json

import pytest

from vltbench.bench import BENCHMARKS, run_bench
from vltbench.errors import UserError

COMMON = {"benchmark", "title", "figures", "config", "command", "call", "torch", "threads", "quick", "machine",
          "elapsed_s"}


def test_quick_bench_writes_json(tmp_path):
    names = ["peak", "dit-scaling", "latent-cache"]
    out = run_bench(names, tmp_path, quick=True, threads=1)
    assert list(out) == names
    for name in names:
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert COMMON <= set(data), name
        assert "error" not in data, data.get("traceback")
        assert data["benchmark"] == name and data["quick"] is True and data["threads"] == 1
        assert data["rows"], name

    peak = json.loads((tmp_path / "peak.json").read_text())["figures"]
    assert peak["peak_gflops"] > 0 and "2 FLOPs per fused multiply-add" in peak["convention"]

    scaling = json.loads((tmp_path / "dit-scaling.json").read_text())["figures"]
    n = scaling["n_tokens"]
    assert scaling["lengths"] == [n // 8, n // 4, n // 2, n]
    full = scaling["per_k"][str(n)]
    assert full["flops_ratio"] == 1.0 and full["train_time_ratio"] == 1.0
    for row in scaling["per_k"].values():
        assert {"train_ms", "sample_ms", "flops_ratio", "train_time_ratio", "train_quotient",
                "sample_time_ratio", "sample_quotient"} <= set(row)
        assert 0 < row["flops_ratio"] <= 1

    cache = json.loads((tmp_path / "latent-cache.json").read_text())["figures"]
    assert cache["speedup"] > 0
    assert cache["cache_bytes_formula"] == 20020 * 2 * 32 * 16 * 4  # tiny preset: N_train x flips x N x d x 4


def test_unknown_benchmark_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown benchmark"):
        run_bench(["nope"], tmp_path, quick=True)
    assert set(BENCHMARKS) == {"peak", "dit-scaling", "dit-gflops", "features", "latent-cache", "memory",
                               "overhead", "gpu"}
