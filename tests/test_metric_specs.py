"""One declaration per metric (vltbench.evaluation.metrics.specs): a metric a plugin declares is a leaderboard column
with its header and direction, and `check` compares it with its direction, noise column and minimum effect."""

import pytest
from helpers import identity

from vltbench.core import registry
from vltbench.core.errors import UserError
from vltbench.evaluation.metrics import specs
from vltbench.evaluation.metrics.specs import MetricSpec, metric_spec, metric_specs, register_metric
from vltbench.evaluation.store import ResultStore, build_record, load_frame
from vltbench.reporting import check as check_mod
from vltbench.reporting import figures as plots
from vltbench.reporting import tables as report
from vltbench.reporting.check import check
from vltbench.reporting.formats import render
from vltbench.reporting.tables import leaderboard

PROV = {"vltbench_version": "0.1.0", "created": "2025-01-01T00:00:00+00:00"}
SHARPNESS = MetricSpec("sharpness", "Sharpness", "higher", noise_key="sharpness_std", min_effect=0.5)


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Every test's declarations are forgotten afterwards (the registry re-discovers): nothing leaks."""
    registry.metrics.reset()
    yield
    registry.metrics.reset()


def write(root, scores: dict, ckpt="a"):
    """Records with gFID (tome 5 worse: methods the table can tell apart) and the plugin's `sharpness` (+ its own
    std); scores: {(method, K, seed): value}."""
    store = ResultStore(root)
    for (m, k, s), v in scores.items():
        store.write(build_record(identity(m, k, s, ckpt=ckpt),
                                 {"gfid": 30.0 - k / 8 + 5 * (m == "tome"), "gfid_bootstrap_std": 0.5, "sharpness": v, "sharpness_std": 0.2},
                                 compute={"sampling_gflops": float(k)}, provenance=PROV))
    return load_frame(root)


ONE_SEED = {("merge", 8, 0): 3.0, ("merge", 32, 0): 4.0, ("tome", 8, 0): 5.0, ("tome", 32, 0): 2.0}


def test_builtin_declarations():
    keys = [s.key for s in metric_specs()]
    assert len(keys) == len(set(keys))
    for key in ("gfid", "gfid_noguidance", "rfid", "real_fid", "rfid_full", "xlen_distance", "kid", "psnr", "ssim",
                "lpips", "precision", "recall", "inception_score", "sampling_gflops", "dit_forward_gflops",
                "align_frechet_to_full", "align_cknna", "align_merged_pair_cos"):
        assert metric_spec(key) is not None, key
    assert metric_spec("gfid").noise_key == "gfid_bootstrap_std" and metric_spec("kid").noise_key == "kid_std"
    assert metric_spec("precision").better == "higher" and metric_spec("gfid").min_effect == 1.0
    assert metric_spec("gfid").header_for("FID") == "gFID" and metric_spec("rfid").header_for("DINOv2") == "rFD_DINOv2"
    assert not metric_spec("real_fid").column and not metric_spec("real_fid").is_ranked
    # undeclared per-record columns get a neutral declaration; other unknown keys none
    assert metric_spec("params_vae").header == "vae params (M)" and metric_spec("align_new").better is None
    assert metric_spec("nonsense") is None
    # the old per-module tables are gone: these facts live in one place
    for mod, names in ((report, ("BOOTSTRAP_STD", "ALIGN_BETTER", "ALIGN_NAMES", "EXACT", "TRIVIAL_AT_N")),
                       (check_mod, ("BOOTSTRAP_STD", "HIGHER_IS_BETTER", "DEFAULT_MIN_EFFECT")),
                       (plots, ("ALIGN_BETTER", "ALIGN_NAMES"))):
        assert not any(hasattr(mod, n) for n in names), mod


def test_plugin_metric_is_a_leaderboard_column(tmp_path):
    register_metric(SHARPNESS)
    t = leaderboard(write(tmp_path, ONE_SEED))[0]
    col = next(c for c in t.columns if c.key == "sharpness")
    assert col.header == "Sharpness" and col.better == "higher" and col.noise_key == "sharpness_std"
    assert [c.key for c in t.columns][-1] == "sharpness"  # after the built-in columns present
    best = t.rows.iloc[sorted(t.best["sharpness"])]
    assert best[["method", "K"]].values.tolist() == [["tome", 8]]  # higher is better: the largest value
    rows = t.rows.set_index(["method", "K"])
    assert rows.loc[("merge", 8), "sharpness_std"] == pytest.approx(0.2)  # one seed: its own std
    md = render([t], "md")
    assert "| Sharpness |" in md and "**5.00 ± 0.2**" in md


def test_undeclared_metric_is_no_column(tmp_path):
    t = leaderboard(write(tmp_path, ONE_SEED))[0]
    assert "sharpness" not in {c.key for c in t.columns}


def test_plugin_metric_is_checked_with_its_noise_and_direction(tmp_path):
    register_metric("sharpness", "Sharpness", "higher", noise_key="sharpness_std", min_effect=0.5)
    base = write(tmp_path / "b", ONE_SEED)
    lower = {key: v - 1.0 for key, v in ONE_SEED.items()}  # worse for a higher-is-better metric
    rep = check(base, write(tmp_path / "c", lower, ckpt="b"), metrics=("gfid", "sharpness"))
    rows = [r for r in rep.rows if r.metric == "sharpness"]
    assert rep.failed and {r.verdict for r in rows} == {"regression"}
    r = rows[0]
    assert r.how == "bootstrap std" and r.noise == pytest.approx(0.2 * 2 ** 0.5)
    assert r.threshold == pytest.approx(2 * 0.2 * 2 ** 0.5)  # z x noise is above the declared min effect
    assert rep.min_effect["sharpness"] == 0.5
    higher = {key: v + 1.0 for key, v in ONE_SEED.items()}
    better = check(base, write(tmp_path / "d", higher, ckpt="b"), metrics=("sharpness",))
    assert not better.failed and {r.verdict for r in better.rows} == {"improved"}
    # a caller's min effect still overrides the declared one
    assert check(base, write(tmp_path / "e", lower, ckpt="b"), metrics=("sharpness",),
                 min_effect={"sharpness": 2.0}).rows[0].verdict == "ok"


def test_check_refuses_undeclared_or_undirected_metrics(tmp_path):
    base = write(tmp_path, ONE_SEED)
    with pytest.raises(UserError, match="unknown metric 'sharpness'.*register_metric"):
        check(base, base, metrics=("sharpness",))
    with pytest.raises(UserError, match="'cfg_scale' has no better direction"):
        check(base, base, metrics=("cfg_scale",))


def test_register_refuses_a_conflicting_declaration():
    register_metric(SHARPNESS)
    register_metric(SHARPNESS)  # the same declaration again: fine (a module imported twice)
    with pytest.raises(UserError, match="'sharpness' is already declared"):
        register_metric("sharpness", "Sharpness", "lower")
    assert register_metric("sharpness", "Sharpness", "lower", replace_existing=True).better == "lower"
    with pytest.raises(UserError, match="better must be 'lower', 'higher' or None"):
        MetricSpec("x", "X", "up")


def test_entry_point_declares_a_metric(tmp_path, monkeypatch):
    """A distribution's `vltbench.metrics` entry point is found without importing any method."""
    site = tmp_path / "site"
    (site / "sharp_plugin").mkdir(parents=True)
    (site / "sharp_plugin" / "__init__.py").write_text(
        "from vltbench.evaluation.metrics import MetricSpec\n"
        "SPECS = [MetricSpec('sharpness', 'Sharpness', 'higher', noise_key='sharpness_std', min_effect=0.5)]\n")
    info = site / "sharp_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sharp-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[vltbench.metrics]\nsharpness = sharp_plugin:SPECS\n")
    monkeypatch.syspath_prepend(str(site))
    registry.metrics.reset()
    assert metric_spec("sharpness") == SHARPNESS
    t = leaderboard(write(tmp_path / "r", ONE_SEED))[0]
    assert any(c.key == "sharpness" and c.better == "higher" for c in t.columns)
