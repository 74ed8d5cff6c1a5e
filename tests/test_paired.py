"""Training seeds of one recipe share a leaderboard row; method differences are paired over seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vltbench.paired import Z95, paired_differences
from vltbench.report import leaderboard, render
from vltbench.store import ResultStore, build_record, load_frame
from helpers import identity

CFG = {"data": {"name": "mnist"}, "tokenizer": {"width": 64}, "dit": {"width": 128}, "lengths": {},
       "generator": "joint"}
GFD = {("merge", 0): 10.0, ("merge", 1): 11.0, ("tail-drop", 0): 14.0, ("tail-drop", 1): 16.0}


def write(root, methods=("merge", "tail-drop"), width=64):
    store = ResultStore(root)
    for (m, ts), v in GFD.items():
        if m not in methods:
            continue
        ident = identity(m, 4, seed=ts, ckpt=f"{m[0]}{ts}{width}")  # sampling seed = training seed: shared noise
        cfg = {**CFG, "seed": ts, "methods": {m: {}}, "tokenizer": {"width": width}}
        store.write(build_record(ident, {"gfid": v, "gfid_bootstrap_std": 0.2, "rfid_full": 5.0 + ts,
                                         "rfid_full_bootstrap_std": 0.1}, config=cfg))
    return load_frame(root)


def test_training_seeds_of_one_recipe_are_one_row(tmp_path):
    t = leaderboard(write(tmp_path))[0]
    rows = t.rows.set_index("method")
    assert rows.loc["merge", "seeds"] == 2 and rows.loc["merge", "gfid"] == pytest.approx(10.5)
    assert rows.loc["merge", "gfid_std"] == pytest.approx(np.std([10, 11], ddof=1))
    ceiling = rows.loc["merge tokenizer @K=N (recon)"]
    assert ceiling["gfid"] == pytest.approx(5.5) and ceiling["seeds"] == 2  # one ceiling row, seeds averaged
    assert not any("@" in m.split(" tokenizer")[0] for m in t.rows["method"])


def test_other_recipes_stay_apart(tmp_path):
    write(tmp_path / "a", methods=("merge",))
    write(tmp_path / "a", methods=("merge",), width=96)  # same cells, another recipe: other checkpoints
    labels = set(leaderboard(load_frame(tmp_path / "a"))[0].rows["method"])
    # the checkpoints of the two recipes differ, so each seed's checkpoint gets its own label
    assert sum(lab.startswith("merge @") for lab in labels) >= 2


def test_paired_differences_interval_and_verdict(tmp_path):
    df = write(tmp_path)
    t = leaderboard(df)[0]
    (name, d), = t.differences.items()
    assert name.startswith("gFID") and "lower is better" in name
    r = d.iloc[0]
    diffs = np.array([10 - 14, 11 - 16.0])
    se = np.sqrt(max(diffs.var(ddof=1), 0.2 ** 2 * 2) / 2)
    assert (r["a"], r["b"], r["pairs"]) == ("merge", "tail-drop", 2)
    assert r["diff"] == pytest.approx(diffs.mean())
    assert (r["lo"], r["hi"]) == pytest.approx((diffs.mean() - Z95 * se, diffs.mean() + Z95 * se))
    assert r["verdict"] == "merge better"
    assert "| 4 | merge | tail-drop | 2 | -4.50 | [-5.48, -3.52] | merge better |" in render([t], "md")


def test_overlapping_interval_is_undecided():
    g = pd.DataFrame({"_label": ["a", "b", "a", "b"], "length": 4, "train_seed": [0, 0, 1, 1], "seed": [0, 0, 1, 1],
                      "m": [1.0, 1.2, 1.0, 0.9], "m_std": 0.3})
    r = paired_differences(g, "m", "m_std", "lower").iloc[0]
    assert r["lo"] < 0 < r["hi"] and r["verdict"] == "undecided"
    higher = paired_differences(g.assign(m=[2.0, 1.0, 2.1, 1.0], m_std=0.01), "m", "m_std", "higher").iloc[0]
    assert higher["verdict"] == "a better"
