"""The Python API (vltbench.api, exported by `import vltbench`) in process, beside the CLI: the same cells
and numbers as `vltbench run`, the same one-line UserError messages as the CLI's `error:` line."""

import json
import os
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import torch

import vltbench
from helpers import FLOAT_RTOL, TINY, diff_paths, run_cli_here
from vltbench.core.errors import UserError

# columns of a flat record that may differ between two runs of the same cell
VOLATILE = {"path", "samples_path", "created", "git_sha"}


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """`vltbench run` of merge at K = 4 and 8 on the tiny test config; trains merge into the session's cache
    (the same folder tests/conftest.py gives every test), where the API finds the checkpoint."""
    cache = os.environ.get("VLTBENCH_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")
    res = tmp_path_factory.mktemp("cli") / "results"
    r = run_cli_here("run", "--method", "merge", "--lengths", "4,8", "--config", TINY, "--results", res, "-q",
                     env={"VLTBENCH_CACHE": cache, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list(res.glob("merge/*.json"))) == 2
    return res


@pytest.fixture
def one_thread(monkeypatch):
    """The CLI run of cli_results takes one thread (OMP_NUM_THREADS=1): match it, so float sums are taken
    in the same order and the numbers can be compared exactly."""
    from vltbench.core import progress

    monkeypatch.setattr(progress, "QUIET", progress.QUIET)  # quiet=True below must not leak
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _records(paths):
    return {rec["cell_id"]: rec for rec in (json.loads(open(p).read()) for p in paths)}


def test_evaluate_equals_the_cli_records(cli_results, tmp_path, one_thread):
    from vltbench.evaluation.store import load_frame

    df = vltbench.evaluate(["merge"], [4], config=TINY, results=tmp_path / "api", quiet=True)
    cli = load_frame(cli_results)
    cli4 = cli[cli["length"] == 4].reset_index(drop=True)
    assert len(df) == 1 and list(df["cell_id"]) == list(cli4["cell_id"])
    cols = [c for c in cli.columns if c not in VOLATILE]
    assert set(cols) <= set(df.columns)
    # floats to FLOAT_RTOL: float64 LAPACK reductions (alignment's SVD) may differ in the last bits
    # between two processes (6.229928 vs 6.229928 at rel 1e-16 was seen); everything else exactly
    pd.testing.assert_frame_equal(df[cols], cli4[cols], check_exact=False, rtol=FLOAT_RTOL, atol=1e-12)
    # the records themselves: every value the CLI wrote
    api_rec, cli_rec = (next(iter(_records([p]).values())) for p in (df["path"][0], cli4["path"][0]))
    for section in ("identity", "metrics", "compute", "alignment", "guidance", "subsets", "unavailable"):
        assert not diff_paths(api_rec[section], cli_rec[section]), section
    for name in ("gfid", "rfid"):
        assert df[name][0] == pytest.approx(cli_rec["metrics"][name], rel=FLOAT_RTOL), name


def test_evaluate_returns_exactly_the_requested_cells(cli_results, one_thread):
    before = {p: p.read_bytes() for p in cli_results.glob("merge/*.json")}
    df = vltbench.evaluate("merge", "4", config=TINY, results=cli_results, train=False, quiet=True)
    assert list(df["length"]) == [4] and len(before) == 2  # the folder's K = 8 record is not requested
    both = vltbench.evaluate(["merge"], [8, 4], config=TINY, results=cli_results, train=False, quiet=True)
    assert list(both["length"]) == [8, 4]  # the requested order
    assert both["cell_id"].iloc[1] == df["cell_id"].iloc[0]
    assert {p: p.read_bytes() for p in cli_results.glob("merge/*.json")} == before  # found done, not rewritten


def test_leaderboard_check_plot(cli_results, tmp_path):
    from vltbench.reporting.check import CheckReport
    from vltbench.reporting.formats import render
    from vltbench.reporting.tables import Table
    from vltbench.evaluation.store import load_frame

    tables = vltbench.leaderboard(cli_results)
    assert len(tables) == 1 and isinstance(tables[0], Table)
    assert "merge" in render(tables, "md")
    frame = vltbench.leaderboard(load_frame(cli_results), frame=True)
    methods = frame[frame["row"] == "method"]
    assert set(methods["K"]) == {4, 8} and {"gfid", "gfid_std", "best", "pareto"} <= set(frame.columns)
    report = vltbench.check(cli_results, cli_results, report=tmp_path / "check.json")
    assert isinstance(report, CheckReport) and not report.failed and report.rows
    assert json.loads((tmp_path / "check.json").read_text())["failed"] is False
    df = load_frame(cli_results)
    assert not vltbench.check(df, df, min_effect={"gfid": 0.5, "rfid": 0.5}).failed
    paths = vltbench.plot(cli_results, tmp_path / "plots")
    assert paths and all(p.exists() and p.parent == tmp_path / "plots" for p in paths)
    assert {p.name for p in vltbench.plot(cli_results)} == {p.name for p in paths}  # default: beside the records
    assert (cli_results / "plots" / "gfid_vs_gflops.png").is_file()
    with pytest.raises(UserError, match="out=FOLDER"):
        vltbench.plot(df)


def test_flops_takes_the_class_count_from_the_dataset(tmp_path):
    from vltbench.core.config import load_config
    from vltbench.models.bundle import build_bundle

    def dit_params(n):
        return sum(p.numel() for p in build_bundle(cfg, "merge", n).new_dit().parameters())

    df = vltbench.flops("merge", [4, 32], config=TINY, overrides={"data.name": "digits"})
    cfg = load_config("tiny", TINY, {"data.name": "digits"})
    assert list(df["length"]) == [4, 32] and list(df["num_classes"]) == [10, 10]
    assert (df["params_dit"] == dit_params(10)).all() and dit_params(10) != dit_params(13)
    assert any("10 classes" in n for n in df.attrs["notes"])
    assert list(vltbench.flops("merge", [4], config=TINY)["num_classes"]) == [10]  # mnist, the default
    assert list(vltbench.flops("merge", [4], config=TINY, overrides={"data.name": "embedded"})["num_classes"]) == [13]
    # folder / imagenet: the class folders under data.root, without reading any image
    for c in ("a", "b", "c"):
        (tmp_path / "flat" / c).mkdir(parents=True)
        (tmp_path / "split" / "train" / c).mkdir(parents=True)
    assert vltbench.flops("merge", [4], config=TINY, overrides={"data.name": "folder"},
                          data_root=tmp_path / "flat")["num_classes"][0] == 3
    assert vltbench.flops("merge", [4], config=TINY, overrides={"data.name": "imagenet"},
                          data_root=tmp_path / "split")["num_classes"][0] == 3
    # without the data: imagenet is ImageNet-1k unless told; a folder needs --num-classes
    assert vltbench.flops("merge", [4], config=TINY, overrides={"data.name": "imagenet"})["num_classes"][0] == 1000
    assert vltbench.flops("merge", [4], config=TINY, overrides={"data.name": "imagenet"},
                          num_classes=100)["num_classes"][0] == 100
    assert vltbench.flops("merge", [4], config=TINY, overrides={"data.name": "folder"},
                          num_classes=7)["num_classes"][0] == 7


def test_flops_cli_prints_the_dataset_class_count(monkeypatch, capsys):
    code, out, _ = _cli(["flops", "--method", "merge", "--lengths", "4", "--config", TINY, "--set", "data.name=digits"],
                        monkeypatch, capsys)
    assert code == 0 and "sampling_gflops" in out and "label embedding for 10 classes" in out


def _cli(args, monkeypatch, capsys):
    """The real console entry point in process: (exit code, stdout, stderr)."""
    from vltbench.core import progress
    from vltbench.cli import main

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main() replaces it
    monkeypatch.setattr(progress, "QUIET", progress.QUIET)
    monkeypatch.setattr(sys, "argv", ["vltbench", *map(str, args)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capsys.readouterr()
    return e.value.code, out, err


R, E = ["run", "--method", "merge"], ["eval", "--method", "merge"]
# (id, API call given tmp_path, the same mistake on the command line)
SAME_ERROR = [
    ("lengths-range", lambda t: vltbench.evaluate("merge", [4, 33]), [*R, "--lengths", "4,33"]),
    ("lengths-twice", lambda t: vltbench.evaluate(["merge"], [8, 8]), [*R, "--lengths", "8,8"]),
    ("lengths-text", lambda t: vltbench.evaluate("merge", "4,x"), [*R, "--lengths", "4,x"]),
    ("lengths-empty", lambda t: vltbench.evaluate("merge", []), [*R, "--lengths", ""]),
    ("unknown-method", lambda t: vltbench.evaluate(["mrege"], [4]), ["run", "--method", "mrege", "--lengths", "4"]),
    ("no-method", lambda t: vltbench.evaluate([], [4]), ["run", "--lengths", "4"]),
    ("seeds-twice", lambda t: vltbench.evaluate("merge", [4], seeds=[1, 1]), [*R, "--lengths", "4", "--seeds", "1,1"]),
    ("n-samples", lambda t: vltbench.evaluate("merge", [4], n_samples=0), [*R, "--lengths", "4", "--n-samples", "0"]),
    ("preset", lambda t: vltbench.evaluate("merge", [4], preset="huge"), [*R, "--lengths", "4", "--preset", "huge"]),
    ("set-unknown-key", lambda t: vltbench.evaluate("merge", [4], overrides={"dit.widht": 3}),
     [*R, "--lengths", "4", "--set", "dit.widht=3"]),
    ("set-no-equals", lambda t: vltbench.evaluate("merge", [4], overrides=["dit.steps"]),
     [*R, "--lengths", "4", "--set", "dit.steps"]),
    ("config-missing", lambda t: vltbench.evaluate("merge", [4], config=t / "nope.yaml"),
     [*R, "--lengths", "4", "--config", "{t}/nope.yaml"]),
    ("checkpoint-two-methods", lambda t: vltbench.evaluate("merge,tail-drop", [4], checkpoint=t / "c.safetensors"),
     ["run", "--methods", "merge,tail-drop", "--lengths", "4", "--checkpoint", "{t}/c.safetensors"]),
    ("checkpoint-missing", lambda t: vltbench.evaluate("merge", [4], config=TINY, train=False, results=t / "r",
                                                       checkpoint=t / "nope.safetensors"),
     [*E, "--lengths", "4", "--config", TINY, "--results", "{t}/r", "--checkpoint", "{t}/nope.safetensors"]),
    ("results-is-file", lambda t: vltbench.evaluate("merge", [4], config=TINY, results=t / "file"),
     [*R, "--lengths", "4", "--config", TINY, "--results", "{t}/file"]),
    ("executor", lambda t: vltbench.evaluate("merge", [4], config=TINY, results=t / "r", executor="pbs"),
     [*R, "--lengths", "4", "--config", TINY, "--results", "{t}/r", "--executor", "pbs"]),
    ("partition-local", lambda t: vltbench.evaluate("merge", [4], config=TINY, results=t / "r", slurm_partition="p"),
     [*R, "--lengths", "4", "--config", TINY, "--results", "{t}/r", "--slurm-partition", "p"]),
    ("train-unknown-method", lambda t: vltbench.train("nope"), ["train", "--method", "nope"]),
    ("train-out-is-folder", lambda t: vltbench.train("merge", config=TINY, out=t),
     ["train", "--method", "merge", "--config", TINY, "--out", "{t}"]),
    ("train-lengths", lambda t: vltbench.train("merge", generator="separate", lengths="abc"),
     ["train", "--method", "merge", "--generator", "separate", "--lengths", "abc"]),
    ("leaderboard-missing", lambda t: vltbench.leaderboard(t / "nope"), ["leaderboard", "--results", "{t}/nope"]),
    ("leaderboard-empty", lambda t: vltbench.leaderboard(t), ["leaderboard", "--results", "{t}"]),
    ("plot-missing", lambda t: vltbench.plot(t / "nope", t / "plots"), ["plot", "--results", "{t}/nope"]),
    ("report-missing", lambda t: vltbench.report(t / "nope"), ["report", "--results", "{t}/nope"]),
    ("report-empty", lambda t: vltbench.report(t), ["report", "--results", "{t}"]),
    ("check-missing", lambda t: vltbench.check(t / "nope", t), ["check", "--baseline", "{t}/nope", "--candidate", "{t}"]),
    ("check-empty", lambda t: vltbench.check(t, t), ["check", "--baseline", "{t}", "--candidate", "{t}"]),
    ("flops-lengths", lambda t: vltbench.flops("merge", "8,8"), ["flops", "--method", "merge", "--lengths", "8,8"]),
    ("flops-method", lambda t: vltbench.flops("nope", [4]), ["flops", "--method", "nope", "--lengths", "4"]),
    ("flops-folder-no-data", lambda t: vltbench.flops("merge", [4], overrides={"data.name": "folder"}),
     ["flops", "--method", "merge", "--lengths", "4", "--set", "data.name=folder"]),
    ("run-folder-no-data", lambda t: vltbench.evaluate("merge", [4], overrides={"data.name": "folder"}),
     ["run", "--method", "merge", "--lengths", "4", "--set", "data.name=folder"]),  # the error, no note before it
    ("flops-classes-contradict", lambda t: vltbench.flops("merge", [4], overrides={"data.name": "digits"},
                                                          num_classes=13),
     ["flops", "--method", "merge", "--lengths", "4", "--set", "data.name=digits", "--num-classes", "13"]),
]


@pytest.mark.parametrize("call,args", [pytest.param(c, a, id=i) for i, c, a in SAME_ERROR])
def test_api_errors_are_the_cli_errors(call, args, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError) as e:
        call(tmp_path)
    message = str(e.value)
    assert "\n" not in message
    code, _, err = _cli([str(a).format(t=tmp_path) for a in args], monkeypatch, capsys)
    assert code == 2 and err.strip().splitlines() == [f"error: {message}"]


def test_api_only_mistakes_are_user_errors():
    for call, text in [(lambda: vltbench.evaluate("merge", [4, 1.5]), "1.5 is not an integer"),
                       (lambda: vltbench.evaluate("merge", [True]), "True is not an integer"),
                       (lambda: vltbench.evaluate("merge", [4], seeds=["a"]), "--seeds"),
                       (lambda: vltbench.evaluate("merge", [4], overrides={"": 1}), "overrides"),
                       (lambda: vltbench.flops("merge", [4], num_classes=0), "--num-classes 0")]:
        with pytest.raises(UserError, match=text):
            call()


def test_import_is_cheap_and_names_resolve():
    code = ("import sys, vltbench\n"
            "heavy = lambda: sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules)\n"
            "assert heavy() == [], heavy()\n"
            "fns = [vltbench.evaluate, vltbench.leaderboard, vltbench.flops, vltbench.plot, vltbench.UserError]\n"
            "assert heavy() == [], heavy()\n"
            "assert vltbench.__version__\n"
            "from vltbench import check, report, train\n"
            "assert callable(check) and callable(report) and callable(train)\n"
            "import inspect\n"
            "assert 'config' in inspect.signature(vltbench.train).parameters\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_train_returns_the_checkpoint(tmp_path, one_thread):
    from vltbench.models.bundle import read_metadata

    path = vltbench.train("tail-drop", config=TINY, out=tmp_path / "ckpt" / "t.safetensors", quiet=True)
    assert path == tmp_path / "ckpt" / "t.safetensors" and path.is_file()
    assert read_metadata(path)["method"] == "tail-drop"
