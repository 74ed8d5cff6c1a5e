"""The CLI end to end and its bad-input battery: one line, exit != 0, no traceback. In process (run_cli_here:
the console entry point, without a python + torch start-up per call); the real `python -m vltbench`
process is run by the reliability and resume tests."""


import pytest

from helpers import TINY, run_cli_here

BAD_LENGTHS = ["", "0", "-3", "1.5", "abc", "33", "4,4"]


@pytest.mark.parametrize("lengths", BAD_LENGTHS)
def test_bad_lengths(lengths, tmp_path):
    r = run_cli_here("run", "--method", "merge", "--lengths", lengths, "--results", tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error: --lengths") and len(r.stderr.strip().splitlines()) == 1


BAD = [
    (["run", "--method", "mrege", "--lengths", "4"], "unknown method 'mrege'; did you mean merge"),
    (["run", "--method", "merge", "--lengths", "4", "--preset", "huge"], "unknown preset 'huge'"),
    (["train", "--method", "merge", "--set", "dit.widht=3"], "dit.widht: unknown key"),
    (["train", "--method", "merge", "--set", "dit.steps=abc"], "dit.steps: Input should be a valid integer"),
    (["train", "--method", "merge", "--set", "methods.merge.blokcs=2"], "methods.merge.blokcs: unknown key"),
    (["train", "--method", "nested-dropout", "--set", "methods.nested-dropout.schedule=cubic"],
     "methods.nested-dropout.schedule"),
    (["train", "--method", "merge", "--config", "/nonexistent.yaml"], "does not exist"),
    (["train", "--method", "merge", "--set", "data.name=folder", "--data-root", "/nonexistent/dir"], "does not exist"),
    (["eval", "--method", "merge", "--lengths", "4", "--checkpoint", "/nonexistent.safetensors"], "does not exist"),
    # refused when the config is resolved: before the (here missing) folder is read or anything trains
    (["run", "--method", "merge", "--lengths", "4", "--set", "data.name=folder", "--data-root", "/nonexistent/dir",
      "--extractor", "mnist-cnn"], "error: extractor mnist-cnn is a digit classifier trained on mnist at 16x16, not "
                                   "valid for data.name folder: use --extractor inception (or randproj)"),
    (["leaderboard", "--results", "/nonexistent/results"], "does not exist"),
    (["leaderboard", "--format", "pdf", "--results", "."], None),
    (["check", "--baseline", "/nonexistent", "--candidate", "."], "does not exist"),
    (["bench"], "No such command 'bench'"),  # the dev benchmarks run from benchmarks/bench.py
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_is_one_line(args, message, tmp_path):
    r = run_cli_here(*args, cwd=tmp_path)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    err = r.stderr.strip()
    if message:
        assert message in err, err
        assert len(err.splitlines()) == 1, err


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dit: [unclosed\n")
    r = run_cli_here("train", "--method", "merge", "--config", bad)
    assert r.returncode == 2 and "is not valid YAML" in r.stderr and "Traceback" not in r.stderr
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("dit:\n  nope: 1\n")
    r = run_cli_here("train", "--method", "merge", "--config", unknown)
    assert r.returncode == 2 and f"{unknown}: dit.nope: unknown key" in r.stderr



def test_config_that_is_binary_or_a_directory(tmp_path):
    """Two bad --config values found by probing (issue 35): each one error line, no traceback."""
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(128, 256)) * 4)
    for path, message in ((garbage, "is not UTF-8 text"), (tmp_path, "is a directory")):
        r = run_cli_here("train", "--method", "merge", "--config", path)
        err = r.stderr.strip()
        assert r.returncode == 2 and message in err and len(err.splitlines()) == 1, err


def test_unwritable_results_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli_here("run", "--method", "merge", "--lengths", "4", "--config", TINY, "--results", blocker / "sub")
    assert r.returncode == 2 and "not writable" in r.stderr and "Traceback" not in r.stderr


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    r = run_cli_here("eval", "--method", "merge", "--lengths", "4", "--config", TINY, "--checkpoint", bad,
                     "--results", tmp_path / "r")
    assert r.returncode == 2 and "unreadable or truncated" in r.stderr and "Traceback" not in r.stderr


def test_methods_lists_builtins():
    r = run_cli_here("methods")
    assert r.returncode == 0
    for name in ("merge", "nested-dropout", "tail-drop", "tome"):
        assert name in r.stdout


def test_help_explains_every_option():
    for cmd in ("run", "eval", "train", "flops", "leaderboard", "plot", "report", "check", "methods"):
        r = run_cli_here(cmd, "--help")
        assert r.returncode == 0 and "--help" in r.stdout


def test_train_run_resume_and_report(tmp_path):
    """The whole pipeline on the tiny test config: train, sweep, resume, leaderboard, plot, check."""
    res = tmp_path / "results"
    r = run_cli_here("run", "--method", "merge", "--lengths", "4,32", "--config", TINY, "--results", res, "-q")
    assert r.returncode == 0, r.stderr
    records = sorted(res.glob("merge/*.json"))
    assert len(records) == 2
    first = {p: p.read_bytes() for p in records}
    # resume: nothing recomputed or rewritten
    r = run_cli_here("run", "--method", "merge", "--lengths", "4,32", "--config", TINY, "--results", res)
    assert r.returncode == 0 and "0 cells written, 2 already done" in r.stderr
    assert {p: p.read_bytes() for p in records} == first
    r = run_cli_here("leaderboard", "--results", res, "--format", "md")
    assert r.returncode == 0 and "gFD_randproj" in r.stdout and "merge" in r.stdout
    header = next(line for line in r.stdout.splitlines() if line.startswith("| method"))
    assert "PSNR (dB)" in header and "SSIM" in header
    # the default (rich) format, piped: the summary view as plain text (no colour codes); the diagnostics
    # view on request; md keeps every column (above)
    piped = run_cli_here("leaderboard", "--results", res)
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout and "…" not in piped.stdout
    assert "GFLOPs/" in piped.stdout and "Pareto" in piped.stdout and "SSIM" not in piped.stdout
    diag = run_cli_here("leaderboard", "--results", res, "--view", "diagnostics")
    assert diag.returncode == 0 and "SSIM" in diag.stdout and "Pareto" not in diag.stdout
    bad = run_cli_here("leaderboard", "--results", res, "--format", "md", "--view", "diagnostics")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --view diagnostics chooses the columns")
    r = run_cli_here("plot", "--results", res, "--out", tmp_path / "plots")
    assert r.returncode == 0 and (tmp_path / "plots").is_dir() and any((tmp_path / "plots").glob("*.png"))
    r = run_cli_here("check", "--baseline", res, "--candidate", res, "--report", tmp_path / "check.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "check.json").is_file()
    r = run_cli_here("flops", "--method", "merge", "--lengths", "4,32", "--config", TINY)
    assert r.returncode == 0 and "sampling_gflops" in r.stdout
