import io
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vltbench.errors import UserError
from vltbench.plots import make_plots
from vltbench.report import auc_log_gflops, leaderboard, pareto_mask, render
from vltbench.store import ResultStore, build_record, load_frame
from helpers import identity

PROV = {"vltbench_version": "0.1.0", "created": "2025-01-01T00:00:00+00:00"}
METHODS = {"merge": 0.0, "nested-dropout": 6.0, "tail-drop": 12.0}  # gFID offset per method


def strip(seed: int, shade: int) -> Image.Image:
    """8 square 32 px 'samples' side by side, like a record's samples artifact."""
    rng = np.random.default_rng(seed)
    tiles = [np.clip(rng.normal(shade + rng.uniform(-50, 50, 3), 25, (32, 32, 3)), 0, 255) for _ in range(8)]
    return Image.fromarray(np.concatenate(tiles, axis=1).astype(np.uint8))


def write_results(root, seeds=(0, 1), n_samples=1000, lengths=(4, 8, 16, 32)):
    store = ResultStore(root)
    for mi, (m, off) in enumerate(METHODS.items()):
        for k in lengths:
            for s in seeds:
                ident = identity(m, k, s, n_samples)
                rec = build_record(
                    ident,
                    {"gfid": 60 - 10 * math.log2(k) + off + 0.7 * s, "gfid_bootstrap_std": 0.8,
                     "rfid": 30 / math.log2(2 * k) + off / 3, "kid": 0.02, "inception_score": None,
                     "precision": 0.5 + 0.01 * k, "recall": 0.4},
                    unavailable={"inception_score": "extractor has no logits"},
                    compute={"sampling_gflops": 50 * 0.02 * k, "dit_forward_gflops": 0.02 * k, "nfe": 50,
                             "params": {"dit": 2.1e6, "tokenizer": 1.0e6}},
                    alignment={"frechet_to_full": 40 / k, "cknna": 1 - 1 / k,
                               "merged_pair_cos": 0.9 - 0.01 * k} if m == "merge" else {"cknna": 0.9 - 1 / k},
                    artifacts={"samples": f"{ident['seed']}-{k}.png"}, provenance=PROV)
                path = store.write(rec)
                strip(s, 60 + 60 * mi).save(path.parent / rec["artifacts"]["samples"])
    return load_frame(root)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_results(root)
    return root, write_results(root, seeds=(0,), n_samples=500, lengths=(8,))


def test_groups_never_mix_sample_counts(results):
    _, df = results
    tables = leaderboard(df)
    assert len(tables) == 2
    big, small = tables
    assert "n_samples=1000" in big.group["samples"] and "n_samples=500" in small.group["samples"]
    assert len(big.rows) == 12 and set(big.rows["seeds"]) == {2}
    assert len(small.rows) == 3 and set(small.rows["K"]) == {8} and set(small.rows["seeds"]) == {1}
    merge8 = big.rows.set_index(["method", "K"]).loc[("merge", 8)]
    assert merge8["gfid"] == pytest.approx(60 - 30 + 0.35)  # mean of seeds 0 and 1 only
    assert merge8["gfid_std"] == pytest.approx(np.std([30, 30.7], ddof=1))
    # single seed: the bootstrap std is shown
    assert small.rows["gfid_std"].tolist() == [0.8] * 3


def test_best_marking_and_unavailable(results):
    _, df = results
    t = leaderboard(df)[0]
    best = t.rows.iloc[sorted(t.best["gfid"])]
    assert best[["method", "K"]].values.tolist() == [["merge", 32]]
    assert set(t.rows.iloc[sorted(t.best["precision"])]["K"]) == {32}  # higher is better
    headers = [c.header for c in t.columns]
    assert "gFID" in headers and "IS" not in headers  # null everywhere: dropped, not shown as 0
    assert any("inception_score not available: extractor has no logits" in n for n in t.notes)
    md = render([t], "md")
    line = next(ln for ln in md.splitlines() if ln.startswith("| merge | 32 "))
    assert "**" in line and "| merge | 4 " in md


def test_pareto_hand_made():
    cost = [1, 2, 3, 4, np.nan]
    err = [5, 4, 4.5, 1, 0]
    assert pareto_mask(cost, err).tolist() == [True, True, False, True, False]
    assert pareto_mask([1, 1], [2, 2]).tolist() == [True, True]  # ties dominate nobody


def test_pareto_in_leaderboard(results):
    _, df = results
    t = leaderboard(df)[0]
    # merge is better at every cost, so the frontier is exactly the merge curve
    assert sorted(t.pareto) == [("merge", k) for k in (4, 8, 16, 32)]


def test_auc_hand_made():
    auc, rng, notes = auc_log_gflops({"A": ([1, 10, 100], [10, 5, 3]), "B": ([10, 1000], [8, 2])})
    assert rng == pytest.approx((10, 100))
    assert auc["A"] == pytest.approx(4.0)  # (5 + 3) / 2 over log10 in [1, 2]
    assert auc["B"] == pytest.approx(6.5)  # B(2) = 5 by interpolation: (8 + 5) / 2
    auc, rng, notes = auc_log_gflops({"A": ([1, 10], [3, 2]), "B": ([100, 1000], [2, 1]), "C": ([5], [1])})
    assert auc == {} and rng is None
    assert any("do not overlap" in n for n in notes) and any("C:" in n for n in notes)


def test_render_formats(results):
    _, df = results
    tables = leaderboard(df)
    md = render(tables, "md")
    assert md.count("### Group") == 2 and "inception-v3-tf2015" in md and "AUC of gFID" in md
    html = render(tables, "html")
    assert html.count("<table>") == 2 and "<b>" in html
    csv = pd.read_csv(io.StringIO(render(tables, "csv")))
    assert len(csv) == 15 and {"method", "K", "gfid", "gfid_std", "samples", "best"} <= set(csv.columns)
    with pytest.raises(UserError, match="unknown table format 'xlsx'"):
        render(tables, "xlsx")


def test_rich_console(results):
    from rich.console import Console

    from vltbench.report import print_tables

    con = Console(record=True, width=200, file=io.StringIO())
    print_tables(leaderboard(results[1]), con)
    text = con.export_text()
    assert "merge" in text and "*" in text and "n_samples=1000" in text


def test_make_plots(results, tmp_path):
    root, df = results
    paths = make_plots(df, tmp_path, root)
    names = {p.name for p in paths}
    for base in ("gfid_vs_gflops", "rfid_vs_length", "alignment_vs_length", "samples"):
        assert {f"{base}_g1.png", f"{base}_g1.svg"} <= names
    assert all(p.stat().st_size > 1000 for p in paths)
    assert Image.open(tmp_path / "samples_g1.png").size[0] > 400
