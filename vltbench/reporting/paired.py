"""Method-vs-method differences at each length, paired over shared seeds, with a 95% interval.

Two records are a pair when they measure two methods at the same K with the same training seed and
sampling seed (so the same noise and class labels per sample index); d = a - b per pair.

Variance model: the independent unit is the training seed. The pairs of one training seed are averaged
over their sampling seeds (usually one: sampling seed = training seed) into d_t; over the n shared
training seeds, mean = mean(d_t), se = sd(d_t, ddof=1) / sqrt(n) and the 95% interval is
mean ± t(0.975, n - 1) · se. The spread of d_t over training seeds already holds each d_t's sampling
noise, so the records' own bootstrap / binomial stds are not added. With n = 1 there is no interval (nan).
A verdict names the better method only with n >= MIN_SEEDS_FOR_VERDICT training seeds and an interval
that excludes 0; with fewer seeds it reads "undecided: n seeds".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

MIN_SEEDS_FOR_VERDICT = 3  # with 2 seeds t(1) = 12.7: an interval that wide decides nothing worth stating
MODEL_NOTE = ("95% interval: t with n−1 df over n training seeds; per-seed differences averaged over sampling "
              f"seeds; no verdict below {MIN_SEEDS_FOR_VERDICT} seeds")


def t95(n: int) -> float:
    """The two-sided 95% multiplier for a mean over n units (t with n - 1 df); nan for n < 2."""
    return float(stats.t.ppf(0.975, n - 1)) if n >= 2 else float("nan")


def paired_mean_se(d: np.ndarray, train_seeds: np.ndarray | None = None) -> tuple[float, float, int]:
    """(mean, standard error, n training seeds) of paired differences d as the module doc says;
    `train_seeds`: each pair's training seed (None: every pair its own training seed)."""
    d = np.asarray(d, float)
    if train_seeds is not None:  # average over sampling seeds: one number per training seed
        _, inv = np.unique(np.asarray(train_seeds), return_inverse=True)
        d = np.bincount(inv.ravel(), weights=d) / np.bincount(inv.ravel())
    n = len(d)
    se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(d.mean()) if n else float("nan"), se, n


def verdict(a: str, b: str, lo: float, hi: float, n: int, better: str) -> str:
    if n < MIN_SEEDS_FOR_VERDICT:
        return f"undecided: {n} seed{'s' * (n != 1)}"
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 <= hi:
        return "undecided"
    a_better = (hi < 0) if better == "lower" else (lo > 0)
    return f"{a if a_better else b} better"


COLUMNS = ["K", "a", "b", "seeds", "pairs", "diff", "lo", "hi", "df", "verdict"]


def paired_differences(g: pd.DataFrame, key: str, better: str) -> pd.DataFrame:
    """One row per (K, method a, method b) with a < b by row label: n training seeds, n pairs, mean a - b,
    its interval with its degrees of freedom, and the verdict. `g` has the columns _label, length,
    train_seed, seed and key."""
    rows = []
    have = g.dropna(subset=[key])
    for k, at_k in have.groupby("length", sort=True):
        labels = sorted(at_k["_label"].unique())
        by = {lab: sub.set_index(["train_seed", "seed"])[key] for lab, sub in at_k.groupby("_label")}
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                common = by[a].index.intersection(by[b].index)
                if not len(common) or by[a].index.has_duplicates or by[b].index.has_duplicates:
                    continue
                d = (by[a].loc[common] - by[b].loc[common]).to_numpy(float)
                mean, se, n = paired_mean_se(d, common.get_level_values("train_seed").to_numpy())
                half = t95(n) * se
                rows.append({"K": int(k), "a": a, "b": b, "seeds": n, "pairs": len(d), "diff": mean,
                             "lo": mean - half, "hi": mean + half, "df": n - 1,
                             "verdict": verdict(a, b, mean - half, mean + half, n, better)})
    return pd.DataFrame(rows, columns=COLUMNS)
