import io
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vltbench.core.errors import UserError
from vltbench.reporting.figures import make_plots
from vltbench.reporting.formats import render
from vltbench.reporting.tables import auc_log_gflops, guidance_text, leaderboard, pareto_mask
from vltbench.evaluation.store import ResultStore, build_record, load_frame
from helpers import identity, with_protocol

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
    assert html.count("<table class='board sortable'") == 2 and "<td class='best" in html and "<strong>" in html
    csv = pd.read_csv(io.StringIO(render(tables, "csv")))
    assert len(csv) == 15 and {"method", "K", "gfid", "gfid_std", "samples", "best"} <= set(csv.columns)
    with pytest.raises(UserError, match="unknown table format 'xlsx'"):
        render(tables, "xlsx")


def test_rich_console(results):
    from rich.console import Console

    from vltbench.reporting.terminal import print_tables

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


# -- guidance protocol, floor / ceiling rows, per-family alignment ------------------------------------
FAMILIES = {"merge": ("global merge", "unmerged cluster means (N tokens)", 0.0, 3.0),
            "nested-dropout": ("truncation", "mask-filled to N", 6.0, 4.0),
            "tail-drop": ("truncation", "mask-filled to N", 12.0, 5.0)}  # family, representation, offset, rfid_full


def chosen_w(m, k, s):
    """The searched scale per (method, K, seed): differs across seeds for tail-drop K=8."""
    return {("nested-dropout", 16): 4.0, ("tail-drop", 8): 1.5 + s}.get((m, k), 2.5)


@pytest.fixture(scope="module")
def protocol_results(tmp_path_factory):
    """Records of the search protocol (3 methods, K 8..32, 2 seeds) and one of the fixed protocol."""
    root = tmp_path_factory.mktemp("protocol")
    store = ResultStore(root)
    for m, (fam, rep, off, full) in FAMILIES.items():
        for k in (8, 16, 32):
            for s in (0, 1):
                rec = build_record(
                    identity(m, k, s, guidance="search"),
                    # floor and ceilings are far below every gFID: best-marking them would be easy to see
                    {"gfid": 40 - 5 * math.log2(k) + off + 0.2 * s, "gfid_bootstrap_std": 0.5,
                     "gfid_noguidance": 50 + off, "real_fid": 2.5, "real_fid_bootstrap_std": 0.1,
                     "rfid_full": full, "rfid_full_bootstrap_std": 0.2, "xlen_distance": 1 - k / 32 + off / 100},
                    compute={"sampling_gflops": float(k)},
                    # merge's Fréchet→full is the lowest everywhere: ranked across families it would win
                    alignment={"frechet_to_full": (0.0 if k == 32 else 10 / k) + off / 10},
                    provenance=PROV)
                store.write(with_protocol(rec, chosen_w(m, k, s), family=fam, representation=rep,
                                          scores={"1.0": 30.0, "2.5": 20.0}))
    rec = build_record(identity("merge", 8, 0, guidance="fixed"), {"gfid": 30.0, "real_fid": 2.5}, provenance=PROV)
    store.write(with_protocol(rec, 1.5, family="global merge", representation="unmerged cluster means (N tokens)"))
    return root, load_frame(root)


def test_flatten_guidance_columns(results, protocol_results):
    df = protocol_results[1].set_index(["method", "length", "seed", "guidance_protocol"])
    assert df.loc[("tail-drop", 8, 1, "search"), "cfg_scale"] == 2.5  # the chosen scale, not the grid
    assert df.loc[("nested-dropout", 16, 0, "search"), "cfg_scale"] == 4.0
    assert df.loc[("merge", 8, 0, "fixed"), "cfg_scale"] == 1.5
    assert df.loc[("tail-drop", 8, 0, "search"), ["family", "alignment_representation"]].tolist() == [
        "truncation", "mask-filled to N"]
    old = results[1]  # records from before the protocol: one sampler.cfg_scale = fixed
    assert set(old["guidance_protocol"]) == {"fixed"} and set(old["cfg_scale"]) == {1.5}
    assert old["family"].isna().all()


def test_search_and_fixed_never_share_a_table(protocol_results):
    search, fixed = leaderboard(protocol_results[1])
    assert search.group["guidance"] == ("searched per (method, K) over grid [1.0, 1.5, 2.5, 4.0] on 150 samples "
                                        "with their own seeds (seed + 1000000) vs train statistics; "
                                        "unguided column at w=1")
    assert fixed.group["guidance"] == "fixed w=1.5 for every method (per-position for merged views)"
    spec = {"protocol": "search", "grid": [1.0, 2.0], "n_select": 16, "select_reference": "train",
            "select_seed": "seed + 1000000", "extend": {"max_extra": 4, "rule": "..."}}
    assert guidance_text({"guidance": spec}, short=True) == "guidance searched over [1.0, 2.0] (+ up to 4 to bracket)"
    assert "grid [1.0, 2.0], extended by up to 4 scales until the best is bracketed, on 16" in guidance_text(
        {"guidance": spec})
    assert "guidance searched" in search.title and "guidance fixed w=1.5" in fixed.title
    assert (fixed.rows["row"] == "method").sum() == 1 and (search.rows["row"] == "method").sum() == 9
    assert "- guidance: fixed w=1.5" in render([fixed], "md")


def test_floor_and_ceiling_rows(protocol_results):
    t = leaderboard(protocol_results[1])[0]
    assert t.rows["row"].iloc[0] == "floor"
    md = render([t], "md")
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert lines[1].startswith("| real (held-out, n=1000) | — | — | 2.50 ± 0.1 | — |")  # first after the header
    i = lines.index(next(ln for ln in lines if ln.startswith("| merge tokenizer")))
    assert lines[i].startswith("| merge tokenizer @K=N (recon) | 32 | — | 3.00 ± 0.2 | — |")
    assert lines[i - 1].startswith("| merge | 32 ")  # right after its method's rows
    csv = pd.read_csv(io.StringIO(render([t], "csv")))
    assert csv["row"].value_counts().to_dict() == {"method": 9, "ceiling": 3, "floor": 1}
    floor = csv[csv["row"] == "floor"].iloc[0]
    assert floor["method"] == "real (held-out, n=1000)" and floor["gfid"] == pytest.approx(2.5)
    assert floor["gfid_std"] == pytest.approx(0.1) and pd.isna(floor["K"]) and pd.isna(floor["best"])
    ceil = csv[csv["row"] == "ceiling"].set_index("method")
    assert ceil["gfid"].to_dict() == pytest.approx({f"{m} tokenizer @K=N (recon)": v[3] for m, v in FAMILIES.items()})
    assert set(ceil["gfid_std"].round(6)) == {0.2} and set(ceil["K"]) == {32}
    html = render([t], "html")
    assert "<tr class='floor'><th scope='row' data-v='0'>real (held-out, n=1000)</th>" in html
    assert html.count("<tr class='ceiling'>") == 3


def test_best_and_pareto_skip_reference_rows(protocol_results):
    t = leaderboard(protocol_results[1])[0]
    kinds = t.rows["row"].to_numpy()
    assert all(kinds[i] == "method" for idx in t.best.values() for i in idx)
    best = t.rows.iloc[sorted(t.best["gfid"])]
    assert best[["method", "K"]].values.tolist() == [["merge", 32]]  # not the floor (2.5) nor a ceiling (3.0)
    assert sorted(t.pareto) == [("merge", k) for k in (8, 16, 32)]
    assert set(t.auc) == set(FAMILIES)  # AUC per method only
    md = render([t], "md")
    assert "**2.50" not in md and "**3.00" not in md


def test_cfg_and_xlen_columns(protocol_results):
    t = leaderboard(protocol_results[1])[0]
    headers = [c.header for c in t.columns]
    assert {"CFG w", "x-len dist→N"} <= set(headers) and "cfg_scale" not in t.best
    rows = t.rows.set_index(["method", "K"])
    assert rows.loc[("merge", 8), "cfg_scale"] == "2.5" and rows.loc[("nested-dropout", 16), "cfg_scale"] == "4"
    assert rows.loc[("tail-drop", 8), "cfg_scale"] == "1.5/2.5"  # chosen per seed: both shown, never averaged
    md = render([t], "md")
    w = headers.index("CFG w") + 3  # after method, K, seeds
    cells = {tuple(ln.split(" | ")[:2]): ln.strip("| ").split(" | ")[w] for ln in md.splitlines()
             if ln.startswith("| ") and " | 8 | " in ln}
    assert cells == {("| merge", "8"): "2.5", ("| nested-dropout", "8"): "2.5", ("| tail-drop", "8"): "1.5/2.5"}
    # x-len: 0 at K=N by definition, so K=N is never marked best; lower K are ranked
    best = t.rows.iloc[sorted(t.best["xlen_distance"])]
    assert best[["method", "K"]].values.tolist() == [["merge", 16]]
    assert any(n.startswith("x-len dist→N:") for n in t.notes)


def test_frechet_to_full_not_ranked_across_families(protocol_results):
    t = leaderboard(protocol_results[1])[0]
    col = next(c for c in t.columns if c.key == "align_frechet_to_full")
    assert col.header == "Fréchet→full (per family)"
    best = t.rows.iloc[sorted(t.best["align_frechet_to_full"])]
    # merge is lowest at every K, but alone in its family: the only mark is truncation's best (not K=N)
    assert best[["method", "K"]].values.tolist() == [["nested-dropout", 16]]
    note = next(n for n in t.notes if n.startswith("Fréchet→full"))
    assert "per family; not comparable across families (representation: merge (global merge): unmerged cluster " \
           "means (N tokens); nested-dropout (truncation): mask-filled to N" in note
    # records without a family (before the protocol) are never ranked on it
    df = protocol_results[1].assign(family=None)
    assert "align_frechet_to_full" not in leaderboard(df)[0].best


def test_rich_escapes_brackets(protocol_results):
    from rich.console import Console

    from vltbench.reporting.terminal import print_tables

    con = Console(record=True, width=400, file=io.StringIO())
    print_tables(leaderboard(protocol_results[1].assign(generator="separate"))[:1], con)
    text = con.export_text()
    assert "real (held-out, n=1000)" in text and "[1.0, 1.5, 2.5, 4.0]" in text


def test_plot_with_floor_and_ceilings(protocol_results, tmp_path):
    root, df = protocol_results
    paths = make_plots(df, tmp_path, root)
    png, svg = tmp_path / "gfid_vs_gflops_g1.png", tmp_path / "gfid_vs_gflops_g1.svg"
    assert png in paths and png.stat().st_size > 1000
    text = svg.read_text()  # matplotlib keeps each drawn text as a comment in the SVG
    assert "real (floor)" in text and "tokenizer @K=N recon (ceiling)" in text
    assert "guidance searched over [1.0, 1.5, 2.5, 4.0]" in text and "cfg_scale" not in text
