"""Resume after kill -9, and the regression check on a deliberately broken model (issue 6)."""

import os
import signal
import subprocess
import sys
import time

from helpers import TINY, run_cli_here
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vltbench.core.paths import local


def _records(res):
    return sorted(p for p in res.rglob("*.json"))


def test_kill_minus_9_mid_sweep_then_resume(tmp_path):
    res = tmp_path / "res"
    # train first so the kill lands in the sweep, not in training (in process; the killed run is a real one)
    assert run_cli_here("train", "--method", "tail-drop", "--config", TINY, "-q").returncode == 0
    args = [sys.executable, "-m", "vltbench", "run", "--method", "tail-drop", "--lengths", "2,4,8,16,32",
            "--config", TINY, "--results", str(res), "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(_records(res)) < 1:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _records(res)
    assert 1 <= len(done) < 5, "kill should land mid-sweep"
    before = {p: p.read_bytes() for p in done}
    # nothing half-written is visible: only complete records and their sample strips
    assert not [p for p in res.rglob("*") if p.name.endswith(".tmp") and not p.name.startswith(".")]
    r = run_cli_here("run", "--method", "tail-drop", "--lengths", "2,4,8,16,32", "--config", TINY, "--results", res)
    assert r.returncode == 0, r.stderr
    after = _records(res)
    assert len(after) == 5
    assert all(p.read_bytes() == b for p, b in before.items())  # finished cells never rewritten
    assert not list(res.rglob(".*.tmp"))


def test_check_flags_a_broken_model_and_passes_a_rerun(tmp_path):
    base, rerun, broken_res = tmp_path / "base", tmp_path / "rerun", tmp_path / "broken"
    r = run_cli_here("run", "--method", "merge", "--lengths", "4,32", "--config", TINY, "--results", base, "-q")
    assert r.returncode == 0, r.stderr
    r = run_cli_here("run", "--method", "merge", "--lengths", "4,32", "--config", TINY, "--results", rerun, "-q")
    assert r.returncode == 0
    r = run_cli_here("check", "--baseline", base, "--candidate", rerun, "--min-effect", "0.2")
    assert r.returncode == 0, r.stdout  # no change: must pass
    # a deliberately broken model: the decoder's pixel head outputs saturated white (mid-grey is not
    # broken enough: against a reference covering every class, the textures included, grey images
    # score better than this 4-step model's samples)
    ckpt = next(iter(base.rglob("*.json"))).read_text()
    import json
    path = str(local(json.loads(ckpt)["artifacts"]["checkpoint"]))  # "<cache>/checkpoints/..." on this machine
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    tensors["tokenizer.to_pixels.weight"].zero_()
    tensors["tokenizer.to_pixels.bias"].fill_(10.0)
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), metadata=meta)
    r = run_cli_here("eval", "--method", "merge", "--lengths", "4,32", "--config", TINY, "--checkpoint", broken,
                     "--results", broken_res, "-q")
    assert r.returncode == 0, r.stderr
    # randproj distances are on a smaller scale than FID: a smaller minimum effect
    r = run_cli_here("check", "--baseline", base, "--candidate", broken_res, "--report", tmp_path / "rep.json",
                     "--min-effect", "0.2")
    assert r.returncode == 1, r.stdout
    assert "regression" in r.stdout
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["failed"] is True
