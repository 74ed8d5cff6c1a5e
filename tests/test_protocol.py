"""The measurement protocol: each test here pins one way a number could fail to measure what its label
says, or a method could get different treatment (issue: measurement validity)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SMALL, TINY
from PIL import Image

from vltbench.core import progress
from vltbench.core.config import load_config
from vltbench.core.errors import UserError
from vltbench.data import load_dataset
from vltbench.data.core import stratified
from vltbench.evaluation.extractors import get_extractor
from vltbench.evaluation.metrics.consistency import xlen_distance
from vltbench.evaluation.references import RealSets
from vltbench.evaluation.store import ResultStore
from vltbench.evaluation.sweep import SweepSpec, bracket_search, run_sweep
from vltbench.models.bundle import build_bundle
from vltbench.models.flow import flow_loss, loss_weight
from vltbench.models.lengths import average_linkage, prefix_view, view_from_labels

ROOT = Path(__file__).resolve().parents[1]


def _write_class_folders(root, classes=4, per_class=12, size=8):
    """A class-ordered image folder tree (root/train/<c>/, root/val/<c>/), like ImageNet's."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")


# --- 1. stratified subsets ------------------------------------------------------------------------

def _assert_covers(labels, idx, count, num_classes):
    assert len(idx) == count and len(np.unique(idx)) == count
    per = np.bincount(labels[idx], minlength=num_classes)
    share = np.bincount(labels, minlength=num_classes) * count / len(labels)
    assert (np.abs(per - share) < 1).all(), (per, share)  # each class within one image of its share


@pytest.mark.parametrize("source", ["embedded", "digits", "folder", "imagenet"])
def test_reference_and_held_out_cover_every_class(source, tmp_path):
    """Splits are stored class by class: the first n_ref images covered 4 of 13 embedded classes."""
    if source in ("folder", "imagenet"):
        _write_class_folders(tmp_path)
        ds = load_dataset(source, root=tmp_path, image_size=8)
        n_ref, n = 16, 8
    else:
        ds = load_dataset(source)
        n_ref, n = (600, 300) if source == "embedded" else (150, 100)  # digits: 359 val images
    if source != "digits":  # stored class by class: "the first n" is a few classes
        assert (np.diff(ds.val.labels) >= 0).all()
    cfg = load_config("tiny", TINY, {"eval.n_ref": n_ref, "eval.n_samples": n})
    sets = RealSets(cfg, ds, get_extractor("randproj"))
    _assert_covers(ds.val.labels, sets.ref_subset.idx, n_ref, ds.num_classes)
    held = sets.held_out
    assert held.split_name == "val" and not set(held.idx) & set(sets.ref_subset.idx)
    _assert_covers(ds.val.labels[np.setdiff1d(np.arange(len(ds.val)), sets.ref_subset.idx)],
                   np.searchsorted(np.setdiff1d(np.arange(len(ds.val)), sets.ref_subset.idx), held.idx),
                   len(held.idx), ds.num_classes)
    info = sets.describe()["reference"]
    assert info["count"] == n_ref and sum(info["per_class"].values()) == n_ref and info["seed"] == 0
    assert min(info["per_class"].values()) > 0


def test_stratified_is_seeded_and_whole_split_when_it_fits():
    labels = np.repeat(np.arange(5), [10, 20, 30, 5, 35])
    a, b = stratified(labels, 40, seed=3), stratified(labels, 40, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, stratified(labels, 40, seed=4))
    _assert_covers(labels, a, 40, 5)
    assert np.array_equal(stratified(labels, 500, seed=0), np.arange(100))
    ex = stratified(labels, 10, 0, exclude=a)
    assert not set(ex) & set(a)


# --- 2. loss weight ---------------------------------------------------------------------------------

def test_truncation_dit_loss_is_the_plain_prefix_loss():
    """A prefix of K tokens was weighted K / N: at K = N/8 a truncation step counted 1/8."""
    cfg = load_config("tiny", TINY, SMALL)
    dit = build_bundle(cfg, "tail-drop", 13).new_dit()
    z, y = torch.randn(6, 32, 16), torch.arange(6)
    gen = torch.Generator().manual_seed(0)
    from vltbench.models.flow import flow_draws
    for k in (4, 32):
        view = prefix_view(k, 32)
        draws = flow_draws(z.shape, gen, "cpu", z.dtype)
        eps, t, _ = draws
        x1, e = z[:, :k], eps[:, :k]
        xt = t[:, None, None] * x1 + (1 - t[:, None, None]) * e
        plain = ((dit(xt, t, y, view) - (x1 - e)) ** 2).mean()
        assert torch.allclose(flow_loss(dit, z, y, view, draws=draws), plain, rtol=1e-6)


def test_mean_loss_weight_is_one_for_every_view():
    like = torch.zeros(1)
    for k in (1, 4, 8, 32):
        assert torch.allclose(loss_weight(prefix_view(k, 32), like), torch.ones(k))
    labels = torch.tensor([0] * 20 + [1] * 8 + [2] * 4)
    w = loss_weight(view_from_labels(labels, 3), like)
    assert torch.allclose(w, torch.tensor([20.0, 8.0, 4.0]) * 3 / 32) and abs(float(w.mean()) - 1) < 1e-6
    per_image = view_from_labels(torch.stack([labels, labels.flip(0)]), 3)
    assert torch.allclose(loss_weight(per_image, like).mean(-1), torch.ones(2))


# --- 3-5: sweep records: guidance protocol, floors and ceilings, cross-length distance ------------

@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # module scope runs before conftest's per-test cache fixture
        mp.setenv("VLTBENCH_CACHE", os.environ.get("VLTBENCH_TEST_CACHE", str(tmp_path_factory.getbasetemp() / "cache")))
        return _sweep(tmp_path_factory)


def _sweep(tmp_path_factory):
    cfg = load_config("tiny", TINY, {"sampler.cfg_scales": [1.0, 2.0, 4.0], "sampler.select_samples": 16,
                                     "dit.steps": 30})
    out = tmp_path_factory.mktemp("protocol")
    outcome = run_sweep(SweepSpec(cfg, ["merge", "tail-drop"], [4, 32], [0], out))
    recs = {(r["identity"]["method"], r["identity"]["length"]): r for _, r in ResultStore(out).entries()}
    return cfg, outcome, recs


def test_guidance_is_searched_with_the_same_budget_for_every_cell(swept):
    cfg, _, recs = swept
    assert len(recs) == 4
    for (method, k), r in recs.items():
        g = r["guidance"]
        assert g["protocol"] == "search" and g["grid"] == sorted([1.0, 2.0, 4.0] + g["added"])
        assert len(g["added"]) <= cfg.sampler.cfg_extend and all(w > 4.0 for w in g["added"])  # 1.0 is the floor: only upwards
        assert set(g["scores"]) == set(g["score_std"]) == {f"{w:g}" for w in g["grid"]}  # every scale scored
        assert all(v > 0 for v in g["score_std"].values())  # each score's bootstrap noise
        best = min(g["scores"], key=lambda w: (g["scores"][w], float(w)))
        assert g["scale"] == float(best)
        assert g["bracketed"] == (g["scale"] < max(g["grid"]))
        assert g["margin_over_noise"] >= 0
        assert "16 samples per scale" in g["selection"] and "train" in g["selection"]
        assert r["identity"]["sampler"]["guidance"]["protocol"] == "search"
        assert r["identity"]["sampler"]["guidance"]["extend"]["max_extra"] == cfg.sampler.cfg_extend == 8
        assert r["metrics"]["gfid_noguidance"] is not None  # unguided always reported
        if g["scale"] == 1.0:
            assert r["metrics"]["gfid"] == r["metrics"]["gfid_noguidance"]
        at_edge = any("guidance not bracketed" in n for n in r["notes"])
        assert at_edge == (not g["bracketed"])  # a choice at the grid's edge is flagged
        assert r["subsets"]["guidance_selection"]["split"].endswith("/train")  # never the test reference
        assert r["subsets"]["reference"]["split"].endswith("/val")


def test_fixed_guidance_is_labelled_and_a_different_cell(swept, tmp_path):
    cfg, _, recs = swept
    fixed = load_config("tiny", TINY, {"sampler.guidance": "fixed", "sampler.cfg_scale": 2.0, "dit.steps": 30})
    run_sweep(SweepSpec(fixed, ["tail-drop"], [4], [0], tmp_path))
    (_, r), = ResultStore(tmp_path).entries()
    assert r["guidance"]["protocol"] == "fixed" and r["guidance"]["scale"] == 2.0 and r["guidance"]["scores"] is None
    assert r["identity"]["sampler"]["guidance"] == {"protocol": "fixed", "scale": 2.0}
    assert r["cell_id"] != recs[("tail-drop", 4)]["cell_id"]


def _curve(best, floor=0.0):
    """A synthetic selection score with its minimum at `best` (log scale), and the scales asked for."""
    asked = []

    def score(w):
        asked.append(w)
        return floor + abs(np.log(w / best)), 0.1
    return score, asked


def test_bracket_search_interior_minimum_scores_only_the_grid():
    score, asked = _curve(2.0)
    r = bracket_search(score, [1.0, 1.5, 2.0, 3.0], 4)
    assert r["scale"] == 2.0 and r["bracketed"] and r["added"] == [] and asked == [1.0, 1.5, 2.0, 3.0]
    assert r["grid"] == [1.0, 1.5, 2.0, 3.0] and r["score_std"] == {w: 0.1 for w in r["grid"]}
    gap = abs(np.log(1.5 / 2.0))  # the runner-up, 1.5, over the noise of a difference (0.1 * sqrt 2)
    assert r["margin_over_noise"] == pytest.approx(gap / (0.1 * np.sqrt(2)))


def test_bracket_search_extends_past_the_top_geometrically():
    score, asked = _curve(8.0)
    r = bracket_search(score, [1.0, 1.5, 2.0, 3.0, 4.5], 4)
    # the grid's last ratio (1.5) continued, 3 significant digits, until a larger scale scores worse
    assert r["added"] == [6.75, 10.1] and asked[5:] == r["added"]
    assert r["scale"] == 6.75 and r["bracketed"] and r["grid"] == [1.0, 1.5, 2.0, 3.0, 4.5, 6.75, 10.1]


def test_bracket_search_extends_down_to_one_and_stops_there():
    r = bracket_search(_curve(1.0)[0], [2.0, 3.0, 4.5], 4)
    assert r["added"] == [1.33, 1.0] and r["scale"] == 1.0 and r["bracketed"]  # w < 1 is never searched
    r = bracket_search(_curve(1.8)[0], [2.0, 3.0], 4)
    assert r["added"] == [1.33] and r["scale"] == 2.0 and r["bracketed"]
    r = bracket_search(_curve(0.5)[0], [1.0, 2.0], 4)  # best at 1.0, the floor: bracketed by definition
    assert r["added"] == [] and r["scale"] == 1.0 and r["bracketed"]


def test_bracket_search_budget_runs_out():
    score, asked = _curve(1000.0)
    r = bracket_search(score, [1.0, 2.0], 3)
    assert r["added"] == [4.0, 8.0, 16.0] and r["scale"] == 16.0 and not r["bracketed"] and len(asked) == 5
    r = bracket_search(_curve(1000.0)[0], [1.0, 2.0], 0)
    assert r["added"] == [] and r["scale"] == 2.0 and not r["bracketed"]
    r = bracket_search(lambda w: (1.0, 0.0), [1.0, 2.0], 2)  # a tie goes to the smaller scale; no noise, no margin
    assert r["scale"] == 1.0 and r["bracketed"] and r["margin_over_noise"] is None
    r = bracket_search(lambda w: (float("nan") if w > 1 else 5.0, 0.1), [1.0, 2.0], 2)  # a failed score loses
    assert r["scale"] == 1.0 and r["bracketed"]


@pytest.mark.parametrize("best", [1.0, 1.2, 1.5, 2.2, 3.0, 4.0, 6.0, 9.5, 30.0])
def test_walk_picks_the_grids_choice_on_one_minimum_with_fewer_scales(best):
    grid = [1.0, 1.5, 2.0, 3.0, 4.5, 6.5, 9.5]
    full, (walk_score, asked) = bracket_search(_curve(best)[0], grid, 8), _curve(best)
    walk = bracket_search(walk_score, grid, 8, walk=True)
    assert walk["scale"] == full["scale"] and walk["added"] == full["added"] and walk["bracketed"]
    assert asked[:3] == [2.0, 3.0, 4.5] and len(asked) == len(set(asked))  # the middle first, nothing twice
    assert walk["unscored"] == [w for w in grid if w not in asked] and len(walk["unscored"]) >= 2
    assert walk["scores"] == {w: full["scores"][w] for w in walk["grid"]}


def test_walk_over_the_committed_reference_scores():
    """The walk replayed on every reference cell's committed grid scores (no sampling): the grid's choice in
    59 of 60 cells; the exception is a near tie (nested-dropout K = 4 seed 0: margin 0.05 noise std)."""
    differ, saved = [], 0
    for path in sorted((ROOT / "results" / "reference").glob("*/*.json")):
        g = json.loads(path.read_text())["guidance"]
        table = {float(w): (v, g["score_std"][w]) for w, v in g["scores"].items()}
        base = [w for w in table if w not in g["added"]]
        walk = bracket_search(lambda w: table[w], base, 8, walk=True)
        assert set(walk["grid"]) <= set(table)  # the grid's extension rule, so only scales the grid scored
        saved += len(walk["unscored"])
        if walk["scale"] != g["scale"]:
            differ.append((path.parent.name, walk["scale"], g["scale"], g["margin_over_noise"]))
    assert len(differ) == 1 and differ[0][0] == "nested-dropout" and differ[0][3] < 0.1, differ
    assert saved >= 2 * 60, saved  # at least 2 of 7 scales saved per cell on average


def test_unbracketed_search_is_noted_and_counted(swept, tmp_path, capsys, monkeypatch):
    """One scale and one extension: whichever of the two wins lies at an edge with no budget left."""
    monkeypatch.setattr(progress, "QUIET", False)
    cfg = load_config("tiny", TINY, {"sampler.cfg_scales": [2.0], "sampler.cfg_extend": 1, "dit.steps": 30})
    run_sweep(SweepSpec(cfg, ["tail-drop"], [4], [0], tmp_path))
    (_, r), = ResultStore(tmp_path).entries()
    g = r["guidance"]
    assert g["grid"] == [2.0, 3.0] and g["added"] == [3.0] and not g["bracketed"]
    assert set(g["scores"]) == {"2", "3"} and g["margin_over_noise"] is not None
    assert any(n.startswith("guidance not bracketed") and "sampler.cfg_extend = 1" in n for n in r["notes"])
    assert r["cell_id"] != swept[2][("tail-drop", 4)]["cell_id"]
    # the cell's progress total grew with the added scale: its last line reads n/n (100%)
    last = [ln for ln in capsys.readouterr().err.splitlines() if "K=4: choose guidance" in ln][-1]
    done, total = last.split("extract features ")[1].split()[0].split("/")
    assert done == total and "(100%) done in" in last


def test_walk_in_a_sweep_scores_the_same_numbers_on_fewer_scales(swept, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "QUIET", False)
    sets = {"sampler.cfg_scales": [1.0, 1.5, 2.0, 3.0, 4.5], "sampler.select_samples": 16, "dit.steps": 30}
    recs = {}
    for how in ("grid", "walk"):
        cfg = load_config("tiny", TINY, {**sets, "sampler.cfg_search": how})
        run_sweep(SweepSpec(cfg, ["tail-drop"], [4], [0], tmp_path / how))
        (_, recs[how]), = ResultStore(tmp_path / how).entries()
    grid, walk = recs["grid"]["guidance"], recs["walk"]["guidance"]
    assert walk["search"] == "walk" and walk["selection"].startswith("walked from 2 over the grid")
    assert walk["unscored"] and set(walk["unscored"]).isdisjoint(walk["grid"])
    assert walk["walk_steps"][0] == [1.5, 2.0, 3.0] and sum(map(len, walk["walk_steps"])) == len(walk["grid"]) - len(walk["added"])
    assert set(walk["grid"]) | set(walk["unscored"]) == set(grid["grid"]) - set(grid["added"]) | set(walk["added"])
    # the same samples and seeds per scale: a walked scale scores exactly what the whole grid gave it
    assert all(walk["scores"][w] == grid["scores"][w] for w in walk["scores"]), (walk["scores"], grid["scores"])
    assert recs["walk"]["cell_id"] != recs["grid"]["cell_id"]
    # benchmarks/sweep_speed.py counts the search's work from the scales each record scored
    import importlib.util
    spec = importlib.util.spec_from_file_location("sweep_speed", ROOT / "benchmarks" / "sweep_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (pw, ew), (pg, eg) = (bench.stage_work(recs[h], recs[h]["config"])["guidance_search_s"] for h in ("walk", "grid"))
    assert 0 < ew <= pw < pg and eg <= pg
    assert recs["walk"]["identity"]["sampler"]["guidance"]["walk"].startswith("score the grid's middle scale")
    assert "walk" not in recs["grid"]["identity"]["sampler"]["guidance"]  # grid cells keep their ids
    last = [ln for ln in capsys.readouterr().err.splitlines() if "K=4: choose guidance" in ln][-1]
    done, total = last.split("extract features ")[1].split()[0].split("/")
    assert done == total and "(100%) done in" in last


def test_floor_and_ceiling_in_every_record(swept):
    _, _, recs = swept
    floors = {r["metrics"]["real_fid"] for r in recs.values()}
    assert len(floors) == 1 and floors.pop() >= 0  # one floor for the whole comparable group
    for method in ("merge", "tail-drop"):
        full, short = recs[(method, 32)]["metrics"], recs[(method, 4)]["metrics"]
        # the ceiling is the reconstruction of the same held-out images at K = N
        assert full["rfid_full"] == pytest.approx(full["rfid"], rel=1e-6)
        assert short["rfid_full"] == full["rfid_full"]
        assert full["real_fid_bootstrap_std"] > 0
    held = recs[("merge", 4)]["subsets"]["held_out"]
    assert held["how"].startswith("stratified, disjoint") and held["count"] == 32


def test_cross_length_distance(swept):
    _, _, recs = swept
    for method in ("merge", "tail-drop"):
        assert recs[(method, 32)]["metrics"]["xlen_distance"] == 0.0
        assert recs[(method, 4)]["metrics"]["xlen_distance"] > 0
    rng = np.random.default_rng(0)
    f = rng.normal(size=(60, 8))
    assert xlen_distance(f, f, 10) == 0.0
    assert xlen_distance(rng.normal(size=(60, 8)), f, 10) == pytest.approx(1.0, abs=0.2)
    assert xlen_distance(f[:10], f[:10], 10) is None


def test_records_name_their_protocol(swept):
    _, _, recs = swept
    r = recs[("tail-drop", 4)]
    spec = r["identity"]["metric_spec"]
    assert spec["protocol"] == 2 and spec["reference"]["source"] == "val"
    assert r["family"] == "truncation" and r["alignment_representation"] == "first K tokens, zero-padded to N"
    assert recs[("merge", 4)]["alignment_representation"].startswith("unmerged cluster means")
    notes = " ".join(r["notes"])
    assert "tokenizer_length_schedule: own: One-D-Piece" in notes
    assert "tokenizer_length_schedule: own: K per step" in " ".join(recs[("merge", 4)]["notes"])


# --- 4-5. merge as upstream -----------------------------------------------------------------------

def test_merge_is_global_by_default():
    """blocks 4 at N = 32, K = 4 made the grouping exactly contiguous pooling: the table could not matter."""
    cfg = load_config("tiny", TINY, SMALL)
    assert cfg.method_options("merge").get("blocks", 1) == 1
    m = build_bundle(cfg, "merge", 13).method
    assert m.options.blocks == 1
    with torch.no_grad():  # positions i and i + 16 alike: at K = 4 a global grouping pairs distant positions
        e = torch.randn(16, m.embed.shape[1])
        m.embed.copy_(torch.cat([e, e]))
    labels = m.view(4).assignment.argmax(-1)
    assert any(labels[i] == labels[i + 16] for i in range(16))


def test_linkage_reads_one_triangle_of_a_noisy_similarity():
    """Upstream adds one noise draw per ordered pair and reads one triangle; symmetrising halved the noise."""
    sim = np.eye(3)
    sim[0, 1], sim[1, 0] = 0.9, -0.9  # upper triangle: 0 and 1 are alike
    sim[0, 2] = sim[2, 0] = 0.2
    sim[1, 2] = sim[2, 1] = 0.3
    first = sorted(average_linkage(sim)[0, :2].astype(int))
    assert first == [0, 1]
    cfg = load_config("tiny", TINY, SMALL)
    m = build_bundle(cfg, "merge", 13).method
    _, noisy = m.similarity(torch.Generator().manual_seed(0))
    clean = m.similarity(None)[1]
    d = (noisy - clean).numpy()
    upper = d[np.triu_indices(32, 1)]
    assert not np.allclose(d, d.T)
    assert upper.std() == pytest.approx(0.1 * 0.718, rel=0.1)  # clamp(randn, -1, 1) * 0.1, one draw per pair


def test_table_frozen_from_the_tokenizer_ema(tmp_path):
    from vltbench.models.lengths import all_cuts
    from vltbench.training.loops import train_tokenizer

    ds = load_dataset("embedded", train_count=64, val_count=26)
    over = {**SMALL, "tokenizer.steps": 6, "tokenizer.warm_start": 2, "tokenizer.batch_size": 8, "tokenizer.warmup": 1}
    raw = build_bundle(load_config("tiny", TINY, over), "merge", 13)
    train_tokenizer(raw, ds, "cpu")
    ema_cfg = load_config("tiny", TINY, {**over, "tokenizer.ema": 0.5})
    ema = build_bundle(ema_cfg, "merge", 13)
    train_tokenizer(ema, ds, "cpu")
    assert not torch.allclose(ema.method.embed, raw.method.embed)  # the EMA, not the last weights
    sim = ema.method.similarity(None)[1].numpy()
    assert torch.equal(ema.method.table, torch.from_numpy(all_cuts(average_linkage(sim), 32)))
    assert "EMA weights (decay 0.5)" in ema.method.describe()["merge_table"]
    assert "keeps no EMA" in raw.method.describe()["merge_table"]


@pytest.mark.parametrize("method", ["merge", "nested-dropout", "tail-drop"])
def test_shared_tokenizer_schedule(method):
    cfg = load_config("tiny", TINY, {**SMALL, "lengths.tokenizer_schedule": "shared"})
    m = build_bundle(cfg, method, 13).method
    assert m.describe()["tokenizer_length_schedule"].startswith("shared: one K per step from K=[4, 6, 8")
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(30):
        out, _ = m.train_tokens(torch.randn(3, 32, 16), gen)
        if method == "tail-drop":
            seen.add(out.shape[1])
        elif method == "nested-dropout":
            kept = (out != m.mask_token).any(-1).sum(1)
            assert (kept == kept[0]).all()  # one K per step for the whole batch
            seen.add(int(kept[0]))
    if method != "merge":
        assert seen <= set(cfg.lengths.train) and len(seen) > 2


# --- 6. ADM reference from the config -------------------------------------------------------------

def _adm_npz(path, dim=2048, images=None):
    arrays = {"mu": np.zeros(dim), "sigma": np.eye(dim)}
    if images is not None:
        arrays["arr_0"] = images
    np.savez(path, **arrays)
    return str(path)


def test_adm_reference_selectable_from_config(tmp_path):
    ds = load_dataset("embedded", train_count=64, val_count=26)
    path = _adm_npz(tmp_path / "VIRTUAL_tiny.npz")
    cfg = load_config("tiny", TINY, {"eval.reference": path})
    sets = RealSets(cfg, ds, get_extractor("inception"))
    assert np.array_equal(sets.reference.mu, np.zeros(2048)) and sets.reference_spec()["source"] == "adm-npz"
    with pytest.raises(UserError, match="ADM batch of Inception statistics but eval.extractor is 'randproj'"):
        RealSets(load_config("tiny", TINY, {"eval.reference": path, "eval.extractor": "randproj"}), ds,
                 get_extractor("randproj"))
    sized = _adm_npz(tmp_path / "sized.npz", images=np.zeros((2, 64, 64, 3), np.uint8))
    bad = RealSets(load_config("tiny", TINY, {"eval.reference": sized}), ds, get_extractor("inception"))
    with pytest.raises(UserError, match="holds 64x64 images but the data are 32x32"):
        bad.reference
    with pytest.raises(UserError, match="does not exist"):
        RealSets(load_config("tiny", TINY, {"eval.reference": str(tmp_path / "missing.npz")}), ds,
                 get_extractor("inception")).reference
