"""Shared test helpers: run the real CLI in a subprocess or in this process, a benchmark's --dry-run, the
tiny test config, a smaller tiny model, a cell identity for hand-built records."""

import json
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


def run_benchmark_dry_run(script: str, out: Path, timeout: int = 300) -> tuple[dict, str]:
    """benchmarks/<script>.py --dry-run --out `out` in a subprocess of a checkout (cache under `out`):
    the JSON report it writes there (<script>.json) and what it printed. A failure shows its output's tail."""
    root = TESTS.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLTBENCH_CACHE": str(out / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, str(root / "benchmarks" / f"{script}.py"), "--dry-run", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads((out / f"{script}.json").read_text()), r.stdout


def run_cli_here(*args, env=None, cwd=None):
    """run_cli in this process (no python + torch start-up per call): the console entry point
    vltbench.cli.main with this argv, stdout and stderr captured, the exit code from its SystemExit (an
    exception main() lets escape, a traceback in a real process, propagates and fails the test).

    For tests of what the CLI prints and returns. Not for process behaviour (signals, torchrun, import
    cost, environment variables read at import, entry points): those keep run_cli. What a call sets is
    restored: environment, cwd, argv, the quiet flag, warnings.formatwarning (main() replaces it), and
    torch's thread count (OMP_NUM_THREADS, else 1, as in run_cli's child, so the numbers are run_cli's)."""
    import contextlib
    import io
    import warnings

    import torch

    from vltbench import cli
    from vltbench.core import progress

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ), os.getcwd(), sys.argv, progress.QUIET, torch.get_num_threads(), warnings.formatwarning
    code = 0
    try:
        os.environ.update({k: str(v) for k, v in (env or {}).items()})
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = ["vltbench", *map(str, args)]
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))  # as run_cli's child would have
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            # a fresh interpreter's warning filters and printing, not pytest's recording
            warnings.resetwarnings()
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=category)
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: \
                sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
            try:
                cli.main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    finally:
        environ, cwd0, sys.argv, progress.QUIET, threads, warnings.formatwarning = saved
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd0)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["vltbench", *map(str, args)], code, out.getvalue(), err.getvalue())


# the tiny preset shrunk further for in-process model tests (seconds, not minutes)
SMALL = {"data.image_size": 32, "tokenizer.latent_dim": 16,  # the mechanism tests feed 32 px, d = 16 tensors
         "tokenizer.width": 32, "tokenizer.heads": 2, "tokenizer.enc_depth": 1, "tokenizer.dec_depth": 1,
         "dit.width": 32, "dit.heads": 2, "dit.depth": 2}


GRID = [1.0, 1.5, 2.5, 4.0]  # the search protocol's CFG scales


def identity(method="merge", length=8, seed=0, n_samples=1000, ckpt="c", guidance=None):
    """The identity of a result cell, for records built by hand (store / report / check tests).

    guidance: None gives the old sampler (one `cfg_scale`); "search" or "fixed" the guidance protocol."""
    sampler = {"steps": 25, "shift": 0.3, "cfg_scale": 1.5, "cfg_interval": [0.15, 1.0]}
    if guidance == "search":
        sampler = {"steps": 25, "shift": 0.3, "cfg_interval": [0.15, 1.0],
                   "guidance": {"protocol": "search", "grid": GRID, "n_select": 150, "select_reference": "train",
                                "select_seed": "seed + 1000000"}}
    elif guidance == "fixed":
        sampler = {"steps": 25, "shift": 0.3, "cfg_interval": [0.15, 1.0],
                   "guidance": {"protocol": "fixed", "scale": 1.5}}
    return {"method": method, "checkpoint_hash": ckpt * 64, "length": length, "n_tokens": 32,
            "generator": "joint", "seed": seed, "preset": "tiny",
            "sampler": sampler,
            "dataset": {"name": "embedded", "manifest_hash": "m" * 64, "image_size": 32},
            "metric_spec": {"extractor_id": "inception-v3-tf2015:sha=abc", "label": "FID",
                            "n_samples": n_samples, "n_ref": 2000, "ref_split": "val",
                            "kid_subset_size": 100, "pr_k": 3}}


def with_protocol(rec, scale, *, family=None, representation=None, scores=None):
    """Add the guidance protocol's top-level fields to a built record (build_record does not take them):
    the chosen scale (and each searched scale's score), the method family, the alignment representation."""
    spec = rec["identity"]["sampler"]["guidance"]
    search = spec["protocol"] == "search"
    rec["guidance"] = {"protocol": spec["protocol"], "scale": scale, "grid": spec.get("grid") if search else None,
                       "scores": scores if search else None,
                       "selection": f"lowest FD of {spec['n_select']} samples vs train" if search else "fixed"}
    rec["family"], rec["alignment_representation"] = family, representation
    return rec


# Floats from BLAS/LAPACK reductions (an SVD, a matmul) may differ in the last bits between runs and
# processes (MKL picks kernels by memory alignment and load): records are compared to this relative
# tolerance, every other value exactly.
FLOAT_RTOL = 1e-9


def diff_paths(a, b, prefix: str = "") -> list[str]:
    """The dotted paths where two JSON-like values differ (floats within FLOAT_RTOL count as equal)."""
    import math

    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b)) for p in diff_paths(a.get(k), b.get(k), f"{prefix}{k}.")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in diff_paths(x, y, f"{prefix}{i}.")]
    if type(a) is float and type(b) is float and math.isclose(a, b, rel_tol=FLOAT_RTOL, abs_tol=1e-12):
        return []
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} != {b!r}"[:300]]


def shapes_folder(out: Path, train: int, val: int) -> Path:
    """A small folder of scripts/make_rgb_folder.py's 32 px shapes (train / val images per class) at `out`."""
    subprocess.run([sys.executable, str(TESTS.parent / "scripts" / "make_rgb_folder.py"), "--out", str(out),
                    "--train", str(train), "--val", str(val)], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out
