"""Smoke test of the performance benchmarks (benchmarks/bench.py, a development suite run from a checkout):
run as a script in quick mode, they write their JSON files with the expected keys. Behaviour only:
timings are never asserted."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "bench.py"
COMMON = {"benchmark", "title", "figures", "config", "command", "call", "torch", "threads", "quick", "machine",
          "elapsed_s"}


def run_script(*args, timeout=900):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=SCRIPT.parents[1], timeout=timeout)


def test_quick_bench_writes_json(tmp_path):
    names = ["peak", "dit-scaling", "latent-cache"]
    p = run_script(*names, "--quick", "--threads", "1", "--out", tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(f.name for f in tmp_path.glob("*.json")) == sorted(f"{n}.json" for n in names)
    for name in names:
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert COMMON <= set(data), name
        assert "error" not in data, data.get("traceback")
        assert data["benchmark"] == name and data["quick"] is True and data["threads"] == 1
        assert data["rows"], name
        assert data["command"].startswith("python ") and "bench.py" in data["command"]

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
    # tiny preset: N_train x views (2 with flips, mnist has none) x N x d x 4 bytes
    assert cache["cache_bytes_formula"] == 4000 * 1 * 32 * 4 * 4


def test_unknown_benchmark_is_a_user_error(tmp_path):
    p = run_script("nope", "--quick", "--out", tmp_path, timeout=300)
    assert p.returncode == 2 and "unknown benchmark 'nope'" in p.stderr and "Traceback" not in p.stderr
    assert not list(tmp_path.glob("*.json"))


def test_benchmark_names_and_no_private_imports():
    spec = importlib.util.spec_from_file_location("vltbench_benchmarks", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[spec.name]
    assert set(mod.BENCHMARKS) == {"peak", "dit-scaling", "dit-gflops", "features", "latent-cache", "memory",
                                   "overhead", "gpu"}
    assert mod.TINY_TEST == Path(__file__).parent / "tiny_test.yaml"
    # the suite uses the package's public names only
    private = re.findall(r"from vltbench[\w.]* import [^\n]*\b_\w+", SCRIPT.read_text())
    assert not private, private
