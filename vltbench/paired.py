"""Method-vs-method differences at each length, paired over shared seeds, with a 95% interval.

Two records are a pair when they measure two methods at the same K with the same training seed and
sampling seed (so the same noise and class labels per sample index). For n pairs with differences d_i
(a - b), the interval is mean(d) ± 1.96 · se, se = sqrt(max(s², b²) / n): s² is the variance of d over
pairs (it holds training-seed and sampling noise) and b² the mean of noise_a² + noise_b² (each record's
own bootstrap / binomial std), which stands in when few pairs make s² unreliable (n = 1: b² alone).
A verdict names the better method only when the interval excludes 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

Z95 = 1.96


def paired_mean_se(d: np.ndarray, noise: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float, float]:
    """(mean of the paired differences d, its standard error) as the module doc says; `noise`: the two
    sides' own stds per pair (None: the spread over pairs alone)."""
    d = np.asarray(d, float)
    n = len(d)
    s2 = d.var(ddof=1) if n > 1 else np.nan
    b2 = float(np.nanmean(noise[0] ** 2 + noise[1] ** 2)) if noise is not None else np.nan
    var = np.nan if np.isnan(s2) and np.isnan(b2) else np.nanmax([s2, b2])
    return float(d.mean()), float(np.sqrt(var / n)) if np.isfinite(var) else float("nan")


def paired_differences(g: pd.DataFrame, key: str, noise_key: str | None, better: str) -> pd.DataFrame:
    """One row per (K, method a, method b) with a < b by row label: n pairs, mean a - b, its interval
    and the verdict. `g` has the columns _label, length, train_seed, seed, key (and noise_key)."""
    rows = []
    have = g.dropna(subset=[key])
    for k, at_k in have.groupby("length", sort=True):
        labels = sorted(at_k["_label"].unique())
        by = {lab: sub.set_index(["train_seed", "seed"]) for lab, sub in at_k.groupby("_label")}
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                common = by[a].index.intersection(by[b].index)
                if not len(common) or by[a].index.has_duplicates or by[b].index.has_duplicates:
                    continue
                d = (by[a].loc[common, key] - by[b].loc[common, key]).to_numpy(float)
                noise = None
                if noise_key and noise_key in g:
                    noise = (by[a].loc[common, noise_key].to_numpy(float), by[b].loc[common, noise_key].to_numpy(float))
                mean, se = paired_mean_se(d, noise)
                n = len(d)
                lo, hi = mean - Z95 * se, mean + Z95 * se
                if not np.isfinite(se) or lo <= 0 <= hi:
                    verdict = "undecided"
                else:
                    a_better = (hi < 0) if better == "lower" else (lo > 0)
                    verdict = f"{a if a_better else b} better"
                rows.append({"K": int(k), "a": a, "b": b, "pairs": n, "diff": mean, "lo": lo, "hi": hi,
                             "verdict": verdict})
    return pd.DataFrame(rows, columns=["K", "a", "b", "pairs", "diff", "lo", "hi", "verdict"])
