"""Scale-out: torchrun (gloo on CPU) gives the same samples, metrics and training as one process;
a dead rank fails cleanly without a record; training resumes from its saved state; the submitit
executor runs one task per missing cell. Tiny sizes: each test takes seconds to tens of seconds."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import TESTS, TINY, run_cli_here

from vltbench.core import dist

EVAL = ["--config", TINY, "--set", "eval.batch_size=8", "--n-samples", "20", "-q"]  # 3 batches: 8, 8, 4


def torchrun(*args, nproc=2, env=None, timeout=300):
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(TESTS / "dist_entry.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout)


def records(folder: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in folder.rglob("*.json")}


def max_abs_diff(a: Path, b: Path) -> float:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    return max((ta[k].double() - tb[k].double()).abs().max().item() for k in ta if ta[k].numel())


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache (data, tail-drop checkpoint, reference stats) for this module's subprocesses."""
    path = tmp_path_factory.mktemp("dist-cache")
    r = run_cli_here("train", "--method", "tail-drop", "--config", TINY, "-q", env={"VLTBENCH_CACHE": str(path)})
    assert r.returncode == 0, r.stderr
    return {"VLTBENCH_CACHE": str(path)}


# ---- helpers, in one process -----------------------------------------------------------------------

@pytest.mark.parametrize("block", [1, 3, 8])
def test_shards_cover_every_index_once(block):
    for n in range(0, 41):
        for w in range(1, 6):
            parts = [dist.shard_bounds(n, block, r, w) for r in range(w)]
            got = np.concatenate([np.arange(a, b) for a, b in parts])
            assert np.array_equal(got, np.arange(n)), (n, w, block)  # disjoint, ordered, nothing dropped
            assert all(a % block == 0 for a, b in parts if b > a)  # whole batches: a single process's batches
            sizes = [-(-(b - a) // block) for a, b in parts]
            assert max(sizes) - min(sizes) <= 1  # balanced in batches


def _gather_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert dist.init("cpu") and dist.world_size() == world
    from vltbench.evaluation.metrics import FeatureStats

    n, dim = 7, 3  # 7 samples over 2 ranks: 4 + 3
    ids = dist.shard(np.arange(n))
    feats = np.random.default_rng(0).normal(size=(n, dim))[ids] if len(ids) else None
    got = dist.gather_rows(feats, ids, dst=None)
    stats = FeatureStats(dim)
    if feats is not None:
        stats.update(feats)
    total = FeatureStats.from_arrays(*(dist.all_reduce_sum(a) for a in stats.to_arrays()))
    np.save(out / f"r{rank}.npy", np.concatenate([got.ravel(), [total.n], total.sum, total.sum_sq.ravel()]))
    dist.destroy()


def test_gather_and_reduce_are_exact_with_uneven_shards(tmp_path):
    import socket

    from vltbench.evaluation.metrics import FeatureStats

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_gather_worker, args=(2, port, tmp_path), nprocs=2, join=True)
    x = np.random.default_rng(0).normal(size=(7, 3))
    one = FeatureStats(3).update(x[:4]).merge(FeatureStats(3).update(x[4:]))
    want = np.concatenate([x.ravel(), [7], one.sum, one.sum_sq.ravel()])
    for r in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"r{r}.npy"), want)  # bitwise, in index order


# ---- evaluation --------------------------------------------------------------------------------------

def test_two_processes_give_the_same_samples_and_metrics(cache, tmp_path):
    one, two, log = tmp_path / "one", tmp_path / "two", tmp_path / "ids"
    log.mkdir()
    # a one-scale grid is at its own edge: the search adds a scale (3.0), on every rank alike
    grid = ["--set", "sampler.cfg_scales=[2.0]", "--set", "sampler.cfg_extend=1"]
    r = run_cli_here("eval", "--method", "tail-drop", "--lengths", "4", *EVAL, *grid, "--results", one, env=cache)
    assert r.returncode == 0, r.stderr
    r = torchrun("eval", "--method", "tail-drop", "--lengths", "4", *EVAL, *grid, "--results", two,
                 env={**cache, "VLTBENCH_TEST_LOG_IDS": str(log)})
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = records(one), records(two)
    assert a.keys() == b.keys() and len(a) == 1  # the same cell
    (cid, ra), = a.items()
    rb = b[cid]
    assert rb["provenance"]["world_size"] == 2 and ra["provenance"]["world_size"] == 1
    for name in ("gfid", "gfid_noguidance", "rfid", "kid", "precision", "recall", "psnr", "ssim", "gfid_bootstrap_std"):
        assert rb["metrics"][name] == pytest.approx(ra["metrics"][name], rel=1e-6, abs=1e-12), name
    # every batch is a single-process batch: the samples (here their grid) are bitwise identical
    assert (one / "tail-drop" / f"{cid}.samples.png").read_bytes() == (two / "tail-drop" / f"{cid}.samples.png").read_bytes()
    # 20 samples over 2 ranks (batches 8+8 | 4): each index generated exactly once per guidance scale,
    # for the test seed and for the guidance-selection seed; the K = N samples once, by rank 0
    calls = {}
    for f in log.glob("rank*.txt"):
        for line in f.read_text().splitlines():
            key, ids = line.split(":")
            calls.setdefault(tuple(key.split()), []).extend(int(i) for i in ids.split())
    assert len(list(log.glob("rank*.txt"))) == 2
    sel = ra["identity"]["sampler"]["guidance"]
    # both ranks grew the guidance grid alike (rank 0's scores, broadcast), as one process did
    assert rb["guidance"]["grid"] == ra["guidance"]["grid"] == [2.0, 3.0]
    assert rb["guidance"]["scale"] == ra["guidance"]["scale"] != 1.0  # guided samples compared too
    want = {("4", "0", "1.0")} | {("4", "0", str(ra["guidance"]["scale"]))} | {("32", "0", "1.0")}
    want |= {("4", "1000000", str(w)) for w in ra["guidance"]["grid"]}  # the base grid and any added scale
    assert want - {("32", "0", "1.0")} <= set(calls) <= want  # K = N samples may be cached already
    for key, ids in calls.items():
        assert sorted(ids) == list(range(sel["n_select"] if key[1] == "1000000" else 20)), key


@pytest.mark.parametrize("how", ["exit", "raise"])
def test_a_dead_rank_fails_cleanly_without_a_record(cache, tmp_path, how):
    res = tmp_path / "res"
    r = torchrun("eval", "--method", "tail-drop", "--lengths", "4", *EVAL, "--results", res,
                 env={**cache, "VLTBENCH_TEST_FAIL": f"1:generate:0:{how}"})
    out = r.stdout + r.stderr
    assert r.returncode != 0
    if how == "exit":  # a crash: torchrun names the rank that died, rank 0 says it lost it
        assert re.search(r"rank\s*: 1 \(local_rank: 1\)\s+exitcode\s*: 13", out), out[-3000:]
        # rank 0 either reports the lost peer itself or is stopped by torchrun first (a race)
        assert "error: rank 0/2: lost contact with another process" in out or "Sending process" in out, out[-3000:]
    else:  # an exception: that rank says so in one line
        assert "error: rank 1/2: RuntimeError: injected failure in generate" in out
    assert not list(res.rglob("*.json")) and not list(res.rglob("*.png"))  # no partial record


# ---- training ----------------------------------------------------------------------------------------

UNEVEN = ["--config", TINY, "--set", "tokenizer.batch_size=15", "--set", "dit.batch_size=15", "-q"]  # 8 + 7


def test_ddp_training_matches_one_process_with_the_same_global_batch(tmp_path):
    env1, env2 = {"VLTBENCH_CACHE": str(tmp_path / "c1")}, {"VLTBENCH_CACHE": str(tmp_path / "c2")}
    r = run_cli_here("train", "--method", "tail-drop", *UNEVEN, "--out", tmp_path / "one.safetensors", env=env1)
    assert r.returncode == 0, r.stderr
    r = torchrun("train", "--method", "tail-drop", *UNEVEN, "--out", tmp_path / "two.safetensors", env=env2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines() == [str(tmp_path / "two.safetensors")]  # rank 0 alone prints
    # same steps up to float summation order (gradients averaged over ranks): weights agree closely
    assert max_abs_diff(tmp_path / "one.safetensors", tmp_path / "two.safetensors") < 1e-5


def test_killed_ddp_training_resumes_to_the_same_weights(tmp_path):
    cfg = [*UNEVEN, "--set", "dit.steps=6", "--set", "dit.ckpt_every=2", "--set", "tokenizer.ckpt_every=2"]
    env1, env2 = {"VLTBENCH_CACHE": str(tmp_path / "c1")}, {"VLTBENCH_CACHE": str(tmp_path / "c2")}
    r = run_cli_here("train", "--method", "tail-drop", *cfg, "--out", tmp_path / "ref.safetensors", env=env1)
    assert r.returncode == 0, r.stderr
    # rank 1 dies during DiT step 3: the state of step 2 survives; restarting continues from it
    r = torchrun("train", "--method", "tail-drop", *cfg, "--out", tmp_path / "two.safetensors",
                 env={**env2, "VLTBENCH_TEST_FAIL": "1:dit:3:exit"})
    assert r.returncode != 0 and not (tmp_path / "two.safetensors").exists()
    states = list((tmp_path / "c2" / "train-state").rglob("*.safetensors"))
    assert sorted(p.name for p in states) == ["dit-joint.safetensors", "tokenizer.safetensors"]
    r = torchrun("train", "--method", "tail-drop", *cfg, "--out", tmp_path / "two.safetensors", env=env2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert max_abs_diff(tmp_path / "ref.safetensors", tmp_path / "two.safetensors") < 1e-5
    assert not list((tmp_path / "c2" / "train-state").rglob("*.safetensors"))  # removed once finished


def _tiny_cfg(steps=6):
    from vltbench.core.config import load_config

    return load_config("tiny", TINY, {"tokenizer.steps": steps, "dit.steps": steps, "tokenizer.ckpt_every": 2,
                                      "dit.ckpt_every": 2})


def _train(cfg, out):
    from vltbench.training.checkpoints import train_bundle
    from vltbench.data import load_data

    return train_bundle(cfg, "tail-drop", load_data(cfg.data), torch.device("cpu"), out=out)


class Crash(Exception):
    pass


def _fail_at(monkeypatch, target, name, n, action):
    orig, calls = getattr(target, name), [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] > n:
            return action(orig(*args, **kwargs))
        return orig(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapped)


def test_resume_after_crashes_in_each_stage_is_bitwise_identical(tmp_path, monkeypatch):
    import vltbench.training.loops as train

    monkeypatch.setenv("VLTBENCH_CACHE", str(tmp_path / "cache"))
    cfg = _tiny_cfg()
    _train(cfg, tmp_path / "ref.safetensors")

    def crash(_):
        raise Crash

    with monkeypatch.context() as m:  # tokenizer step 3 crashes: state of step 2 kept
        _fail_at(m, train._TokenizerStep, "forward", 3, crash)
        with pytest.raises(Crash):
            _train(cfg, tmp_path / "out.safetensors")
    with monkeypatch.context() as m:  # resumes the tokenizer, then DiT step 5 crashes
        _fail_at(m, train, "flow_loss", 5, crash)
        with pytest.raises(Crash):
            _train(cfg, tmp_path / "out.safetensors")
    _train(cfg, tmp_path / "out.safetensors")
    assert max_abs_diff(tmp_path / "ref.safetensors", tmp_path / "out.safetensors") == 0.0


def test_nan_loss_names_the_step_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    import vltbench.training.loops as train
    from safetensors import safe_open

    monkeypatch.setenv("VLTBENCH_CACHE", str(tmp_path / "cache"))
    cfg = _tiny_cfg()
    _train(cfg, tmp_path / "ref.safetensors")
    with monkeypatch.context() as m:
        _fail_at(m, train, "flow_loss", 3, lambda loss: loss * float("nan"))
        with pytest.raises(train.TrainingDiverged) as err:
            _train(cfg, tmp_path / "out.safetensors")
    msg = str(err.value)
    assert "dit loss is nan at step 3" in msg and "last good training state (step 2)" in msg
    state = Path(msg.split(" is kept at ")[1].split(" and ")[0])
    with safe_open(str(state), framework="pt") as f:
        assert f.metadata()["step"] == "2"
    _train(cfg, tmp_path / "out.safetensors")  # resumes from step 2 and finishes as if nothing happened
    assert max_abs_diff(tmp_path / "ref.safetensors", tmp_path / "out.safetensors") == 0.0


# ---- submitit executor -------------------------------------------------------------------------------

def test_missing_submitit_gives_the_install_hint(monkeypatch):
    from vltbench.evaluation import executors
    from vltbench.core.errors import UserError

    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"pip install 'vltbench\[slurm\]'"):
        executors._submitit()


def test_submitit_local_executor_runs_one_task_per_missing_cell(cache, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    res = tmp_path / "res"
    r = run_cli_here("eval", "--method", "tail-drop", "--lengths", "4", *EVAL, "--results", res, env=cache)
    assert r.returncode == 0, r.stderr
    first = records(res)
    r = run_cli_here("eval", "--method", "tail-drop", "--lengths", "4,8", *EVAL, "--results", res,
                     "--executor", "submitit-local", env=cache)
    assert r.returncode == 0, r.stderr
    got = records(res)
    assert len(got) == 2 and all(got[c] == first[c] for c in first)  # the finished cell was not resubmitted
    assert len(list((res / ".submitit").rglob("*_result.pkl"))) == 1  # one task: the missing cell only
    # a preempted task is requeued as the same task; re-running it skips its now-finished cell
    from vltbench.core.config import load_config
    from vltbench.evaluation.executors import CellTask

    cfg = load_config("tiny", TINY, {"eval.batch_size": 8, "eval.n_samples": 20})
    monkeypatch.setenv("VLTBENCH_CACHE", cache["VLTBENCH_CACHE"])
    out = CellTask(cfg, "tail-drop", 8, 0, str(res), False, None).checkpoint().result()
    assert out["written"] == [] and len(out["skipped"]) == 1 and records(res) == got


def test_slurm_executor_needs_a_partition(cache, tmp_path):
    pytest.importorskip("submitit")
    r = run_cli_here("eval", "--method", "tail-drop", "--lengths", "4", *EVAL, "--results", tmp_path,
                     "--executor", "slurm", env=cache)
    assert r.returncode == 2 and r.stderr.startswith("error: --executor slurm needs --slurm-partition")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the task's pid in /proc (Linux)")
def test_preempted_submitit_task_is_requeued_and_finishes(cache, tmp_path, monkeypatch):
    """A real preemption signal (submitit's local executor sends it): the task checkpoints, is
    requeued, runs again and writes its record once."""
    import time

    submitit = pytest.importorskip("submitit")
    from vltbench.core.config import load_config
    from vltbench.evaluation.executors import CellTask

    monkeypatch.setenv("VLTBENCH_CACHE", cache["VLTBENCH_CACHE"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    res = tmp_path / "res"
    cfg = load_config("tiny", TINY, {"eval.batch_size": 8, "eval.n_samples": 20})
    ex = submitit.AutoExecutor(folder=str(tmp_path / "jobs"), cluster="local")
    ex.update_parameters(timeout_min=10)
    job = ex.submit(CellTask(cfg, "tail-drop", 16, 0, str(res), False, None))
    deadline = time.time() + 60
    # wait until the task is at work (submitit installs its signal handlers before calling it)
    while "task started" not in (job.paths.stderr.read_text() if job.paths.stderr.exists() else ""):
        assert time.time() < deadline, "the job did not start"
        time.sleep(0.2)
    # preemption: Slurm (and submitit's local controller at its timeout) signal the task with SIGUSR2;
    # submitit calls checkpoint(), requeues, and the controller starts the task again
    import signal

    ctrl = job._process.pid
    task_pid = int(Path(f"/proc/{ctrl}/task/{ctrl}/children").read_text().split()[0])
    os.kill(task_pid, signal.SIGUSR2)
    out = job.result()
    assert "Requeued" in job.paths.stdout.read_text()
    assert len(records(res)) == 1 and len(out["written"]) + len(out["skipped"]) == 1
