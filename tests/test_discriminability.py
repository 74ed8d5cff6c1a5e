"""The discriminability verdict (vltbench.reporting.discriminability): the committed MNIST reference can tell
methods apart; records made to fail each rule cannot, and then no best, Pareto front or AUC is marked, and
the one line appears under the markdown and terminal tables, on the report page and in `check`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from vltbench.evaluation.store import load_frame
from vltbench.reporting import discriminability as D
from vltbench.reporting.check import check
from vltbench.reporting.page import table_html
from vltbench.reporting.tables import leaderboard, markdown
from vltbench.reporting.terminal import rich_tables

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference"
FAILURE = ROOT / "results" / "small_rgb" / "tiny-on-shapes"  # the tiny preset on the shapes folder


@pytest.fixture(scope="module")
def reference():
    return load_frame(REFERENCE)


def one(df):
    tables = leaderboard(df)
    assert len(tables) == 1
    return tables[0]


def test_committed_reference_can_discriminate(reference):
    t = one(reference)
    assert t.verdict.ok and t.verdict.line is None, t.verdict.reasons
    assert t.best and t.pareto and t.auc
    assert "cannot tell" not in markdown(t)


def _assert_cannot_tell(t, phrase: str):
    assert not t.verdict.ok
    assert any(phrase in r for r in t.verdict.reasons), t.verdict.reasons
    assert not t.best and not t.pareto and not t.auc and not t.rows["pareto"].any()
    md = markdown(t)
    assert t.verdict.line in md and "**" not in md.split("\n\n")[2] and "✓" not in md
    con = Console(width=200, record=True, file=io.StringIO())
    for rt in rich_tables([t], console=con):
        con.print(rt)
    assert "cannot tell methods apart" in con.export_text()
    assert "cannot tell methods apart" in table_html(t)


def test_samples_off_the_data(reference):
    df = reference.assign(precision=reference["precision"] * 0.05)
    _assert_cannot_tell(one(df), "samples are off the data")


def test_reconstruction_bound(reference):
    df = reference.copy()
    full = df["length"] == df["n_tokens"]
    # every tokenizer's ceiling 90% of the way from the floor to its own K = N score
    gen = df[full].groupby("method")["gfid"].mean()
    floor = df["real_fid"].mean()
    df["rfid_full"] = df["method"].map(floor + 0.9 * (gen - floor))
    _assert_cannot_tell(one(df), "reconstruction-bound")
    # 70% of the way: not bound
    df["rfid_full"] = df["method"].map(floor + 0.7 * (gen - floor))
    assert one(df).verdict.ok


def test_within_noise_with_seeds_and_with_one_seed(reference):
    rng = np.random.default_rng(0)
    df = reference.copy()
    # every method the same: each training seed moves all methods alike (so no paired difference decides)
    seed_effect = dict(enumerate(rng.normal(0, 1, df["train_seed"].nunique())))
    df["gfid"] = 10 + df["train_seed"].map(seed_effect) + 0.1 * df["length"]
    df["class_acc"] = 0.9
    _assert_cannot_tell(one(df), "within noise")
    one_seed = df[df["train_seed"] == 0].copy()
    one_seed["gfid"] += rng.normal(0, 1, len(one_seed))
    one_seed["gfid_bootstrap_std"] = 2.0  # |differences| of N(0, 1.4) draws stay below 2 x 2.8
    _assert_cannot_tell(one(one_seed), "within 2 combined stds")
    one_seed.loc[one_seed["method"] == "merge", "gfid"] += 20
    assert one(one_seed).verdict.ok


def test_guidance_flat(reference):
    df = reference.assign(cfg_scale=1.0, cfg_margin=0.3)
    _assert_cannot_tell(one(df), "guidance did nothing")
    df.loc[df.index[: len(df) // 2], "cfg_scale"] = 2.0  # half the cells guided: not flat
    assert one(df).verdict.ok


def test_rules_are_not_applied_without_their_inputs(reference):
    df = reference.drop(columns=["precision", "rfid_full", "cfg_margin"])
    assert one(df).verdict.ok


def test_check_names_a_group_that_cannot_tell(reference):
    bad = reference.assign(precision=0.01)
    report = check(reference, bad)
    assert any(n.startswith("candidate group 1") and "samples are off the data" in n for n in report.notes)
    assert not any(n.startswith("baseline") for n in report.notes)


@pytest.mark.skipif(not FAILURE.is_dir(), reason="the committed failure reproduction is absent")
def test_committed_failure_reproduction_cannot_tell():
    """The held-out-style failure (the tiny preset on a 32 px RGB folder) is judged unable to discriminate."""
    t = one(load_frame(FAILURE))
    assert not t.verdict.ok and not t.best and not t.pareto, t.verdict.reasons


def test_thresholds_are_documented():
    readme = (ROOT / "docs" / "numbers.md").read_text()
    for name in ("PRECISION_MIN", "CEILING_OVER_FLOOR", "CEILING_SHARE", "NOISE_Z", "UNGUIDED_SHARE", "FLAT_MARGIN"):
        value = getattr(D, name)
        assert f"{name} = {value:g}" in readme, name


def test_kid_leads_at_n_below_the_feature_dim(reference):
    """With Inception's 2048-d features and 500 samples the table leads with KID: first column, floor and
    ceiling rows in it, the front computed on it; FID stays as a column. mnist-cnn (64-d) keeps FD first."""
    assert one(reference).headline == "gfid"
    rng = np.random.default_rng(1)
    df = reference.assign(extractor_id="inception-v3-tf2015:sha=7ff4a85c3a63:resize=tf1-bilinear-299:range=uint8",
                          metric_label="FID", real_kid=0.001, real_kid_std=0.0005,
                          rkid_full=reference["rfid_full"] / 100, rkid_full_std=0.001)
    df["kid"] = df["gfid"] / 100 + rng.normal(0, 1e-3, len(df))
    t = one(df)
    assert t.headline == "kid" and t.columns[0].key == "kid" and "KID leads" in t.title
    floor = t.rows[t.rows["row"] == "floor"].iloc[0]
    assert floor["kid"] == pytest.approx(0.001) and floor["gfid"] == pytest.approx(reference["real_fid"].mean())
    assert any(c.key == "gfid" for c in t.columns)
    assert next(iter(t.differences)).startswith("KID")
    # the trade-off plot draws the same: KID points, and the KID floor / ceilings as its reference lines
    from vltbench.reporting.figures import fig_tradeoff, labelled

    ax = fig_tradeoff(labelled(df)).axes[0]
    floor = next(line for line in ax.lines if line.get_label() == "real (floor)")
    assert float(floor.get_ydata()[0]) == pytest.approx(0.001)
