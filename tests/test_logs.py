"""Training loss logs (one JSON line per step, resumable, plotted) and output that reads well in a log
(plain whole lines when stderr is not a terminal; `plot` writes beside the records it plots)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from helpers import SMALL, TINY, run_cli_here
from vltbench.core import progress
from vltbench.core.config import load_config
from vltbench.data import load_dataset
from vltbench.models.bundle import build_bundle
from vltbench.evaluation.store import ResultStore, load_frame
from vltbench.training.loops import loss_log_path, read_loss_log, state_dir

OVER = {**SMALL, "tokenizer.steps": 6, "tokenizer.warm_start": 0,  # resume, not warm-start reuse (test_warm_start)
        "tokenizer.batch_size": 8, "tokenizer.warmup": 1, "tokenizer.ckpt_every": 2,
        "dit.steps": 5, "dit.batch_size": 8, "dit.warmup": 1, "dit.ckpt_every": 2}


@pytest.fixture(scope="module")
def ds():
    return load_dataset("embedded", train_count=64, val_count=26)


def _cfg(**over):
    return load_config("tiny", TINY, {**OVER, **over})


def _record_for(checkpoint: Path, method: str = "merge") -> dict:
    from test_store import record

    rec = record(method=method)
    rec["artifacts"]["checkpoint"] = str(checkpoint)
    return rec


def test_tiny_training_logs_every_step_and_plot_draws_the_curves(tmp_path, ds):
    from vltbench.training.checkpoints import train_bundle
    from vltbench.reporting.figures import make_plots

    ckpt = tmp_path / "ckpt" / "tiny-merge.safetensors"
    cfg = _cfg()
    _, path, _ = train_bundle(cfg, "merge", ds, "cpu", out=ckpt)
    assert path == ckpt and ckpt.is_file()
    tok = read_loss_log(loss_log_path(ckpt, "tokenizer"))
    dit = read_loss_log(loss_log_path(ckpt, "dit-joint"))
    assert loss_log_path(ckpt, "tokenizer").name == "tiny-merge.safetensors.tokenizer.losses.jsonl"
    assert [r["step"] for r in tok] == list(range(1, cfg.tokenizer.steps + 1))  # one line per step
    assert [r["step"] for r in dit] == list(range(1, cfg.dit.steps + 1))
    for r in tok + dit:
        assert r["loss"] > 0 and r["lr"] > 0 and r["elapsed_s"] >= 0
    assert all(1 <= r["K"] <= 32 for r in dit) and all("K" not in r for r in tok)
    assert [r["elapsed_s"] for r in tok] == sorted(r["elapsed_s"] for r in tok)

    res = tmp_path / "res"
    ResultStore(res).write(_record_for(ckpt))
    df = load_frame(res)
    assert df["checkpoint_path"].tolist() == [str(ckpt)]
    paths = make_plots(df, tmp_path / "plots", res)
    names = {p.name for p in paths}
    assert {"loss_merge_tokenizer.png", "loss_merge_tokenizer.svg", "loss_merge_dit-joint.png"} <= names
    svg = (tmp_path / "plots" / "loss_merge_tokenizer.svg").read_text()
    assert "merge · tokenizer training loss" in svg and "tiny-merge.safetensors" in svg

    # records whose checkpoint has no loss logs (e.g. a shipped one): no loss figure, no error
    other = tmp_path / "res2"
    ResultStore(other).write(_record_for(tmp_path / "elsewhere" / "x.safetensors"))
    assert not [p for p in make_plots(load_frame(other), tmp_path / "plots2", other) if p.name.startswith("loss_")]


def test_resumed_stage_appends_from_its_step_without_duplicates(tmp_path, ds, monkeypatch):
    from vltbench.training import loops as train

    cfg = _cfg()
    steps = cfg.tokenizer.steps

    def run(log, *, fail_at=None):
        bundle = build_bundle(cfg, "merge", 13)
        calls, real = [], train.clip_grads

        def clip(*a, **k):
            calls.append(1)
            if len(calls) == fail_at:
                raise KeyboardInterrupt("killed")
            return real(*a, **k)

        with monkeypatch.context() as m:
            m.setattr(train, "clip_grads", clip)
            train.train_tokenizer(bundle, ds, "cpu", loss_log=log)
        return bundle

    whole = run(tmp_path / "whole.safetensors")
    shutil.rmtree(state_dir(whole))
    unlogged = run(None)
    shutil.rmtree(state_dir(unlogged))
    # logging reads values only: the trained weights are the same with and without a log
    for a, b in zip(whole.tokenizer.state_dict().values(), unlogged.tokenizer.state_dict().values()):
        assert torch.equal(a, b)

    log = tmp_path / "resumed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        run(log, fail_at=steps)  # dies in the last step: states saved at 2 and 4, lines 1..5 logged
    assert [r["step"] for r in read_loss_log(loss_log_path(log, "tokenizer"))] == list(range(1, steps))
    with open(loss_log_path(log, "tokenizer"), "a") as f:
        f.write('{"step": 6, "lo')  # a line cut short by the kill
    run(log)  # resumes at step 4: drops lines 5.., appends 5 and 6
    got = read_loss_log(loss_log_path(log, "tokenizer"))
    want = read_loss_log(loss_log_path(tmp_path / "whole.safetensors", "tokenizer"))
    assert [r["step"] for r in got] == list(range(1, steps + 1))
    assert len(loss_log_path(log, "tokenizer").read_text().splitlines()) == steps
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=1e-5)
    assert [r["lr"] for r in got] == pytest.approx([r["lr"] for r in want])


# ---- output in a log ---------------------------------------------------------------------------

PROGRESS = re.compile(r"^merge: (tokenizer|DiT joint|encode latents) (\d+)/(\d+) \((\d+)%\) "
                      r"(started|resumed|elapsed \d+:\d\d:\d\d ETA (\d+:\d\d:\d\d|\?)|done in \d+:\d\d:\d\d)( .*)?$")


def test_output_to_a_pipe_is_plain_whole_lines(tmp_path):
    """`vltbench train` with stderr a pipe: whole lines (a long path is never wrapped), progress as
    counts with elapsed / ETA in full, and the stages' loss logs beside the checkpoint."""
    out = tmp_path / ("a-folder-with-a-long-name-" * 4) / "tiny-merge.safetensors"
    # its own cache: a warm stage cached by another test would make the tokenizer bar start "resumed"
    r = run_cli_here("train", "--method", "merge", "--config", TINY, "--out", out, env={"VLTBENCH_CACHE": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert f"merge: checkpoint written to {out}" in lines, r.stderr
    assert "…" not in r.stderr and "\x1b[" not in r.stderr  # nothing shortened, no terminal codes
    bars = [m for ln in lines if (m := PROGRESS.match(ln))]
    tokenizer = [m for m in bars if m.group(1) == "tokenizer"]
    assert tokenizer[0].group(5) == "started" and tokenizer[-1].group(5).startswith("done in"), r.stderr
    assert tokenizer[-1].group(2) == tokenizer[-1].group(3) == "4"
    assert any(m.group(5).startswith("elapsed") for m in tokenizer), r.stderr
    assert any(m.group(1) == "DiT joint" and m.group(5).startswith("done in") for m in bars), r.stderr
    for stage in ("tokenizer", "dit-joint"):
        assert [row["step"] for row in read_loss_log(loss_log_path(out, stage))] == [1, 2, 3, 4]


def test_plain_progress_lines_every_tenth(capsys, monkeypatch):
    monkeypatch.setattr(progress, "QUIET", False)
    monkeypatch.setattr(progress, "EVERY_S", 1e9)  # only the 10% rule
    with progress.task("work", 1000) as t:
        for _ in range(1000):
            t.advance(info="x 1")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "work 0/1000 (0%) started"
    assert [ln.split()[1] for ln in lines[1:-1]] == [f"{n}/1000" for n in range(100, 1000, 100)]
    assert all(re.search(r"elapsed \d+:\d\d:\d\d ETA \d+:\d\d:\d\d x 1$", ln) for ln in lines[1:-1])
    assert re.fullmatch(r"work 1000/1000 \(100%\) done in \d+:\d\d:\d\d x 1", lines[-1])
    progress.log("a path " + "/very-long-folder-name" * 10 + "/tiny-merge.safetensors")
    assert capsys.readouterr().err.count("\n") == 1  # one whole line, however long


def test_plot_writes_beside_the_records_by_default(tmp_path):
    from test_store import record

    from vltbench.core.errors import UserError
    from vltbench.reporting.figures import COMMITTED_PLOTS, default_out

    res = tmp_path / "my-results"
    path = ResultStore(res).write(record())
    r = run_cli_here("plot", "--results", res, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (res / "plots" / "gfid_vs_gflops.png").is_file()
    assert not (tmp_path / "results").exists()  # not the committed folder's place
    assert default_out(path) == res / "merge" / "plots"  # one record file: beside it
    with pytest.raises(UserError, match="--out results/plots"):
        default_out(COMMITTED_PLOTS.parent)
    r = run_cli_here("plot", "--results", res, "--out", tmp_path / "elsewhere")
    assert r.returncode == 0 and (tmp_path / "elsewhere" / "gfid_vs_gflops.png").is_file()
