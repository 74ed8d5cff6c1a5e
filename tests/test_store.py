import json
import math
import os
import subprocess
import sys

import pytest

from vltbench.core.atomic import atomic_path
from vltbench.core.errors import UserError
from vltbench.evaluation.store import SCHEMA_VERSION, ResultStore, build_record, cell_id, load_frame, provenance
from helpers import identity

PROV = {"vltbench_version": "0.1.0", "git_sha": None, "device": "cpu", "world_size": 1,
        "created": "2025-01-01T00:00:00+00:00"}


def record(gfid=41.2, **kw):
    return build_record(
        identity(**kw),
        {"gfid": gfid, "gfid_bootstrap_std": 0.8, "rfid": 12.1, "kid": 0.02, "inception_score": None,
         "precision": 0.6, "recall": 0.5},
        unavailable={"inception_score": "extractor has no logits"},
        compute={"sampling_gflops": 6.0, "dit_forward_gflops": 0.12, "nfe": 50,
                 "params": {"dit": 2.1e6, "tokenizer": 1.0e6}, "skipped_ops": {"aten::add": 12}},
        alignment={"cknna": 0.7}, artifacts={"samples": "x.png"}, provenance=PROV)


def test_round_trip(tmp_path):
    store = ResultStore(tmp_path)
    rec = record()
    path = store.write(rec)
    assert path == tmp_path / "merge" / f"{rec['cell_id']}.json"
    assert store.exists(rec["cell_id"]) and not store.exists("nope")
    assert json.loads(path.read_text()) == rec
    df = load_frame(tmp_path)
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["method"], row["length"], row["seed"], row["n_samples"]) == ("merge", 8, 0, 1000)
    assert row["gfid"] == 41.2 and row["rfid"] == 12.1 and row["precision"] == 0.6
    assert math.isnan(row["inception_score"])  # unavailable stays missing, never 0
    assert row["sampling_gflops"] == 6.0 and row["params_dit"] == 2.1e6 and row["align_cknna"] == 0.7
    assert row["cell_id"] == rec["cell_id"] == cell_id(rec["identity"])
    assert row["samples_path"] == str(path.parent / "x.png")
    # a single record file works as a root too (check --baseline results/x.json)
    assert load_frame(path)["cell_id"].tolist() == [rec["cell_id"]]


def test_comparable_key_groups_only_identical_specs(tmp_path):
    store = ResultStore(tmp_path)
    for rec in (record(seed=0), record(seed=1, length=16), record(n_samples=500)):
        store.write(rec)
    df = load_frame(tmp_path).set_index(["length", "seed", "n_samples"])
    assert df.loc[(8, 0, 1000), "comparable_key"] == df.loc[(16, 1, 1000), "comparable_key"]
    assert df.loc[(8, 0, 1000), "comparable_key"] != df.loc[(8, 0, 500), "comparable_key"]


def test_cell_id_ignores_key_order():
    ident = identity()
    assert cell_id(ident) == cell_id(dict(reversed(list(ident.items()))))
    assert cell_id(ident) != cell_id(identity(seed=1))


def test_crash_leaves_no_record_and_no_temp(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    target = store.path_for(record())
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("crash while writing")
    assert list(target.parent.iterdir()) == []

    def crash(*a):
        raise RuntimeError("power cut before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(RuntimeError):
        store.write(record())
    assert list(target.parent.iterdir()) == []
    assert len(load_frame(tmp_path)) == 0


def test_write_removes_temp_files_a_killed_writer_left_for_the_cell(tmp_path):
    """A writer killed while writing the record or an artifact (the sample grid) leaves a hidden temp
    file; the next writer of that cell (who holds its claim) removes them, and nobody else's."""
    store = ResultStore(tmp_path)
    rec, other = record(), record(length=32)
    d = tmp_path / "merge"
    d.mkdir()
    mine = [d / f".{rec['cell_id']}.json.a1.tmp", d / f".{rec['cell_id']}.samples.png.b2.tmp"]
    theirs = d / f".{other['cell_id']}.samples.png.c3.tmp"
    for p in [*mine, theirs]:
        p.write_bytes(b"half")
    store.write(rec)
    assert not any(p.exists() for p in mine) and theirs.exists()


def test_finished_record_is_not_overwritten(tmp_path):
    store = ResultStore(tmp_path)
    path = store.write(record(gfid=41.2))
    with pytest.raises(FileExistsError):
        store.write(record(gfid=99.0))
    assert json.loads(path.read_text())["metrics"]["gfid"] == 41.2
    store.write(record(gfid=99.0), overwrite=True)
    assert json.loads(path.read_text())["metrics"]["gfid"] == 99.0


def test_lock_held_by_live_process_is_respected(tmp_path):
    store = ResultStore(tmp_path)
    cid = record()["cell_id"]
    with store.claim(cid) as first:
        assert first
        with store.claim(cid) as second:
            assert not second  # same live pid holds it
    with store.claim(cid) as again:  # released on exit
        assert again


def test_stale_lock_is_taken_over(tmp_path):
    store = ResultStore(tmp_path)
    cid = record()["cell_id"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ".locks" / f"{cid}.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{dead.pid} {os.uname().nodename}")
    with store.claim(cid) as owned:
        assert owned
        assert lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()


# One claim in a child process, as the sweep does for a cell: skip if done, claim, compute (write).
CLAIM_AND_WRITE = """
import json, sys
from vltbench.evaluation.store import ResultStore
rec, store = json.loads(open(sys.argv[1]).read()), ResultStore(sys.argv[2])
if store.exists(rec["cell_id"]):
    print("done earlier"); sys.exit(0)
with store.claim(rec["cell_id"]) as mine:
    if not mine:
        print("taken"); sys.exit(0)
    store.write(rec)
    print("computed")
"""

# Claims a cell, says so, then sleeps holding it (until killed).
CLAIM_AND_SLEEP = """
import sys, time
from vltbench.evaluation.store import ResultStore
with ResultStore(sys.argv[1]).claim(sys.argv[2]) as mine:
    print("held" if mine else "taken", flush=True)
    time.sleep(600 if mine else 0)
"""


def _child(script, *args, timeout=60):
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("left", ["old-format, another host", "old-format, this host, live pid",
                                  "empty", "flock file of a dead holder"])
def test_lock_left_behind_does_not_block_a_requeued_task(tmp_path, left):
    """A Slurm task killed on one node and requeued on another, or restarted after kill -9: the lock
    file its previous life left (the pre-flock format named a pid and host; now the file of a dead
    flock holder) is free, so the new task claims the cell and computes it."""
    rec = record()
    rec_file = tmp_path / "rec.json"
    rec_file.write_text(json.dumps(rec))
    res = tmp_path / "res"
    lock = ResultStore(res)._lock_path(rec["cell_id"])
    lock.parent.mkdir(parents=True)
    if left == "old-format, another host":
        lock.write_text(f"{os.getpid()} node-that-died-{os.uname().nodename} 123456")
    elif left == "old-format, this host, live pid":
        lock.write_text(f"{os.getpid()} {os.uname().nodename} 1")  # a live pid, another start time
    elif left == "empty":
        lock.write_text("")
    else:
        r = _child("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
                   "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'12 gone'); os._exit(0)", lock)
        assert r.returncode == 0, r.stderr
    assert lock.exists()
    r = _child(CLAIM_AND_WRITE, rec_file, res)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "computed"
    assert [json.loads(p.read_text()) for p in ResultStore(res).files()] == [rec]
    assert not lock.exists()  # released and removed by the claimant


def test_kill_minus_9_releases_the_cell_lock_and_live_holders_are_respected(tmp_path):
    store = ResultStore(tmp_path)
    cid = record()["cell_id"]
    holder = subprocess.Popen([sys.executable, "-c", CLAIM_AND_SLEEP, str(tmp_path), cid], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        # two live processes: the second sees the cell as taken (in this process and in another one)
        with store.claim(cid) as mine:
            assert not mine
        r = _child(CLAIM_AND_SLEEP, tmp_path, cid)
        assert r.returncode == 0 and r.stdout.strip() == "taken", r.stderr
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait(30)
        assert store._lock_path(cid).exists()  # its file stays behind ...
        with store.claim(cid) as mine:  # ... but the OS released its lock
            assert mine
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_bad_files_are_skipped_with_reasons(tmp_path):
    store = ResultStore(tmp_path)
    store.write(record())
    d = tmp_path / "merge"
    (d / "corrupt.json").write_text("{not json")
    newer = record(seed=5)
    newer["schema_version"] = SCHEMA_VERSION + 1
    (d / "newer.json").write_text(json.dumps(newer))
    (d / "partial.json").write_text(json.dumps({"schema_version": 1, "cell_id": "x"}))
    edited = record(seed=6)
    edited["identity"]["length"] = 999
    (d / "edited.json").write_text(json.dumps(edited))
    (d / ".abc.json.123.tmp").write_text("{half")  # in-flight temp file: ignored
    (d / "abc.lock").write_text("1")
    with pytest.warns(UserWarning, match="skipping result record"):
        df = load_frame(tmp_path, store)
    assert len(df) == 1
    reasons = {p.name: why for p, why in store.skipped}
    assert set(reasons) == {"corrupt.json", "newer.json", "partial.json", "edited.json"}
    assert "newer than" in reasons["newer.json"] and "missing fields" in reasons["partial.json"]
    assert "edited" in reasons["edited.json"] and "JSON" in reasons["corrupt.json"]


def test_unwritable_root_is_a_user_error(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(UserError, match="not writable.*--results"):
        ResultStore(a_file / "sub").write(record())  # fails for root too: a file is no folder
    with pytest.raises(UserError, match="--results"):
        ResultStore(a_file).write(record())
    with pytest.raises(UserError, match="do not exist"):
        load_frame(tmp_path / "missing")


def test_provenance_fields():
    p = provenance("cpu", 2)
    assert p["device"] == "cpu" and p["world_size"] == 2 and p["vltbench_version"]
    assert {"git_sha", "python", "torch", "torch_fidelity", "fvcore", "numpy", "created"} <= set(p)
