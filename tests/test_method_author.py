"""The method author's loop (issue 24), on a third-party plugin written to a temp folder and installed
as a distribution (package + .dist-info with its entry point, on PYTHONPATH), as `pip install` would:
its code is part of its results' identity, its options are strict, and `check` is a CI step."""

import json
import textwrap

import pytest

from helpers import TINY, run_cli, run_cli_here

PLUGIN = textwrap.dedent('''
    import torch
    from pydantic import BaseModel

    from vltbench.lengths import check_length, view_from_labels
    from vltbench.method import Method


    class Options(BaseModel):  # no extra="forbid": vltbench validates strictly anyway
        layout: str = "contiguous"


    class StridedMerge(Method):
        name = "strided-merge"
        family = "global merge"
        description = "fixed grouping: K contiguous runs, or every K-th position (layout: interleaved)"
        Options = Options

        def view(self, k, z=None):
            k = check_length(k, self.n_tokens, self.name)
            i = torch.arange(self.n_tokens)
            labels = i % k if self.options.layout == "interleaved" else i * k // self.n_tokens
            return view_from_labels(labels, k)

        def expand(self, zk, view):
            return view.unmerge(zk)  # EXPAND

        def train_tokens(self, z, gen):
            view = self.view(self.sample_length(gen))
            return view.unmerge(view.merge(z)), {}
''')


def install(site, code=PLUGIN, version="0.1.0"):
    """The plugin as an installed distribution `vltbench-strided-merge` (what pip would leave)."""
    pkg = site / "strided_merge"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(code)
    info = site / f"vltbench_strided_merge-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vltbench-strided-merge\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[vltbench.methods]\nstrided-merge = strided_merge:StridedMerge\n")
    (info / "top_level.txt").write_text("strided_merge\n")
    return {"PYTHONPATH": str(site)}


def cli(*args, env):
    return run_cli(*args, "--config", TINY, env=env)


def records(folder):
    return [json.loads(p.read_text()) for p in sorted(folder.glob("strided-merge/*.json"))]


def test_misspelt_method_section_is_an_error(tmp_path):
    env = install(tmp_path / "site")
    r = cli("run", "--method", "strided-merge", "--lengths", "4", "--set", "methods.strided_merge.layout=interleaved",
            "--results", tmp_path / "res", env=env)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "methods.strided_merge" in line and "methods.strided-merge" in line, line
    assert not (tmp_path / "res").exists() or not list((tmp_path / "res").rglob("*.json"))
    # a key the plugin's (non-strict) Options model does not declare is refused too
    r = cli("run", "--method", "strided-merge", "--lengths", "4", "--set", "methods.strided-merge.layot=interleaved",
            "--results", tmp_path / "res", env=env)
    assert r.returncode == 2 and "methods.strided-merge.layot: unknown key" in r.stderr, r.stderr
    # the API refuses it the same way, before any work
    import vltbench
    with pytest.raises(vltbench.UserError, match=r"methods.tail_drop: .*did you mean methods.tail-drop\?"):
        vltbench.evaluate("tail-drop", [4], config=TINY, overrides={"methods.tail_drop.foo": 1},
                          results=tmp_path / "api")


@pytest.mark.slow
@pytest.mark.ci
def test_code_edit_retrains_and_eval_names_the_stale_checkpoint(tmp_path):
    site = tmp_path / "site"
    env = install(site)
    res = tmp_path / "res"
    opts = ("--method", "strided-merge", "--lengths", "4", "--set", "methods.strided-merge.layout=interleaved",
            "--results", res, "-q")
    r = cli("run", *opts, env=env)
    assert r.returncode == 0, r.stderr
    first = records(res)
    code = first[0]["provenance"]["method_code"]
    assert code["distribution"] == "vltbench-strided-merge" and code["version"] == "0.1.0"
    assert len(code["source_sha256"]) == 64
    # one changed line (a comment): the old checkpoint and cells no longer describe this code
    install(site, PLUGIN.replace("# EXPAND", "# EXPAND: copy each token back"))
    r = cli("eval", *opts, env=env)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "is stale" in line and "vltbench-strided-merge 0.1.0" in line, line
    # what to run, with the options that were given (not the defaults)
    assert "vltbench train --method strided-merge --config" in line and "methods.strided-merge.layout=interleaved" in line
    r = cli("run", *opts[:-1], env=env)  # not quiet: the log says it trains
    assert r.returncode == 0, r.stderr
    assert "checkpoint written" in r.stderr and "1 cells written, 0 already done" in r.stderr, r.stderr
    second = [rec for rec in records(res) if rec["cell_id"] != first[0]["cell_id"]]
    assert len(second) == 1
    assert second[0]["identity"]["checkpoint_hash"] != first[0]["identity"]["checkpoint_hash"]
    assert second[0]["provenance"]["method_code"]["source_sha256"] != code["source_sha256"]


@pytest.mark.slow
def test_ci_recipe_passes_unchanged_code_and_fails_a_broken_change(tmp_path):
    """docs/writing-a-method.md, "Regression checks in your own CI": the method repository commits baseline records,
    CI reruns with the same options and calls `vltbench check`."""
    site = tmp_path / "site"
    env = install(site)
    # enough training that the tokenizer reconstructs (a broken one must stand out of the noise)
    opts = ("--method", "strided-merge", "--lengths", "4", "--seeds", "0", "-q", "--set", "tokenizer.steps=150",
            "--set", "tokenizer.warm_start=50", "--set", "dit.steps=40")
    assert cli("run", *opts, "--results", tmp_path / "baseline", env=env).returncode == 0
    # CI on unchanged code, on a fresh machine (empty cache: it trains again)
    ci = {**env, "VLTBENCH_CACHE": str(tmp_path / "ci-cache")}
    assert cli("run", *opts, "--results", tmp_path / "candidate", env=ci).returncode == 0
    r = run_cli("check", "--baseline", tmp_path / "baseline", "--candidate", tmp_path / "candidate",
                "--report", tmp_path / "check.json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "passed" in r.stdout and not json.loads((tmp_path / "check.json").read_text())["failed"]
    # a deliberately broken change: the decoder is given no information
    install(site, PLUGIN.replace("return view.unmerge(zk)  # EXPAND", "return 0 * view.unmerge(zk)"))
    assert cli("run", *opts, "--results", tmp_path / "broken", env=ci).returncode == 0
    r = run_cli("check", "--baseline", tmp_path / "baseline", "--candidate", tmp_path / "broken", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED" in r.stdout and "regression" in r.stdout


# -- the smaller items -------------------------------------------------------------------------------

def test_quiet_short_option_on_every_command():
    import typer.main

    from vltbench.cli import app

    def commands(group, prefix=""):  # sub-apps (`import lgm`) included
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from commands(cmd, f"{prefix}{name} ")
            else:
                yield prefix + name, cmd

    for name, cmd in commands(typer.main.get_command(app)):
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert {"--quiet", "-q"} <= opts, name
    r = run_cli_here("methods", "-q")
    assert r.returncode == 0 and "merge" in r.stdout, r.stderr


def test_eval_hint_for_a_missing_checkpoint_keeps_the_overrides(tmp_path):
    r = run_cli_here("eval", "--method", "merge", "--lengths", "4", "--set", "dit.steps=3", "--set",
                     "sampler.cfg_scales=[1.0, 3.0]", "--results", tmp_path / "res", "--config", TINY)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "no checkpoint for merge" in line and f"--config {TINY}" in line and "--set dit.steps=3" in line, line
    assert "--set 'sampler.cfg_scales=[1.0, 3.0]'" in line, line


def test_help_wording():
    r = run_cli_here("run", "--help", env={"COLUMNS": "200"})
    text = " ".join(r.stdout.replace("│", " ").split())
    assert "embedded CPU default" not in text and "MNIST digits" in text
    assert "Default: the config's eval.extractor, auto" in text


def test_api_signatures_are_real():
    import inspect

    import vltbench

    for name, first in (("train", "method"), ("check", "baseline"), ("report", "results"), ("evaluate", "methods")):
        params = inspect.signature(getattr(vltbench, name)).parameters
        assert next(iter(params)) == first and "args" not in params, (name, params)


def test_frame_says_which_distance_gfid_holds():
    from pathlib import Path

    from vltbench.evaluation.store import load_frame

    ref = Path(__file__).parents[1] / "results" / "reference"
    if not ref.is_dir():
        pytest.skip("no committed results/reference in this checkout")
    labels = load_frame(ref).attrs["labels"]
    assert labels["gfid"] == "gFD_mnist-cnn" and labels["rfid"] == "rFD_mnist-cnn"


def test_shipped_checkpoints_record_the_code_that_trained_them(monkeypatch):
    """The README's main job loads the shipped merge (no retraining): the manifest records each built-in's
    code, which is unchanged; a changed built-in (another source hash) no longer matches it."""
    from vltbench.training import checkpoints
    from vltbench.core.config import load_config
    from vltbench.core.errors import UserError
    from vltbench.models.bundle import load_bundle

    cfg = load_config("tiny")
    for method in ("merge", "nested-dropout", "tail-drop", "tome"):
        found = checkpoints.find_checkpoint(cfg, method, 10)
        assert found is not None and found[0].parent.name == "assets" and found[1], method
    path, sha = checkpoints.find_checkpoint(cfg, "merge", 10)
    from vltbench.models import method_code

    real = method_code.code

    def edited(name):
        fp = real(name)
        return {**fp, "source_sha256": "0" * 64} if name == "merge" else fp

    monkeypatch.setattr(method_code, "code", edited)
    assert checkpoints.shipped_path(cfg, "merge", 10) is None  # -> run trains a checkpoint of its own
    with pytest.raises(UserError, match=r"is stale: merge was trained with another version of its code \(vltbench"):
        load_bundle(path, cfg, "merge", 10, expected_sha=sha)
    err = checkpoints.no_checkpoint(cfg, "merge", 10, "`vltbench train --method merge`")
    assert "is stale" in str(err) and "tiny-merge.safetensors" in str(err)


def test_plugin_options_are_strict_at_every_level():
    from pydantic import BaseModel

    from vltbench.core.config import validate_options
    from vltbench.core.errors import UserError

    class Inner(BaseModel):  # neither model forbids extra keys
        width: int = 2

    class Options(BaseModel):
        layout: str = "contiguous"
        inner: Inner = Inner()

    assert validate_options(Options, {"inner": {"width": 3}}, "m").inner.width == 3
    assert isinstance(validate_options(Options, {}, "m"), Options)
    with pytest.raises(UserError, match=r"methods.m.layot: unknown key.*\(options of m: layout, inner\)"):
        validate_options(Options, {"layot": "x"}, "m")
    with pytest.raises(UserError, match=r"methods.m.inner.widht: unknown key.*options of m.inner: width"):
        validate_options(Options, {"inner": {"widht": 3}}, "m")
