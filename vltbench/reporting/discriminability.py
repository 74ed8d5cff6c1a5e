"""Could this comparison have shown a difference at all? One verdict per comparison group (leaderboard table).

A table ranks methods only when its records could tell them apart. Each rule below looks at the
group's records; any rule that fires makes the group "cannot tell", and then the table marks no best
value, no Pareto front and no AUC ranking, and prints one line saying why and what to change.

Rules (thresholds are module constants, documented in docs/numbers.md, "Can this comparison tell methods apart?"):
- samples off the data: the highest precision (k-NN manifold, k = 3) of any method row is below
  PRECISION_MIN: almost no generated sample lands near a real image, so differences between the
  methods' distances are differences between kinds of failure.
- reconstruction-bound: for every method, its tokenizer ceiling (rFID at K = N) is at least
  CEILING_OVER_FLOOR x the floor (held-out real images) and covers at least CEILING_SHARE of the
  distance between the floor and the method's own gFID at K = N: the generated images are as far from
  the data as the tokenizer's reconstructions already are, so generators cannot be told apart.
- within noise: no two methods differ beyond their noise at any K. With >= 3 shared training seeds
  the paired differences decide (no verdict names a better method); with fewer, |a - b| must exceed
  NOISE_Z x the combined std the table shows (the spread over seeds, or with one seed the bootstrap
  std, which leaves training-seed variance out and so errs towards "distinct").
- guidance flat: in at least UNGUIDED_SHARE of the searched cells the search chose w = 1 and the
  runner-up scale lay within FLAT_MARGIN noise stds (margin_over_noise): guidance did nothing the
  search could see, i.e. the generator has not learnt the classes.
A rule whose inputs the records lack (no precision, no ceiling, no search) is not applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .paired import MIN_SEEDS_FOR_VERDICT

PRECISION_MIN = 0.1
CEILING_OVER_FLOOR = 2.0
CEILING_SHARE = 0.75
NOISE_Z = 2.0
UNGUIDED_SHARE = 0.75
FLAT_MARGIN = 2.0
KEY = "gfid"  # the generation distance the rules read (the table's gFID / gFD column)


@dataclass
class Discriminability:
    ok: bool = True
    reasons: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    @property
    def line(self) -> str | None:
        """The one plain line printed under the table; None when the comparison can discriminate."""
        if self.ok:
            return None
        fixes = list(dict.fromkeys(self.fixes))
        return (f"this comparison cannot tell methods apart: {'; '.join(self.reasons)}; no best, Pareto front or "
                f"AUC ranking is marked. To change: {'; '.join(fixes)}")


def _method_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["row"] == "method"]


def _precision(rows: pd.DataFrame) -> tuple[str, str] | None:
    if "precision" not in rows or rows["precision"].isna().all():
        return None
    best = float(rows["precision"].max())
    if best >= PRECISION_MIN:
        return None
    return (f"samples are off the data (highest precision {best:.3g} < {PRECISION_MIN:g}: almost no sample lands "
            "near a real image)", "train longer or larger (tokenizer and DiT steps, widths)")


def _reconstruction_bound(g: pd.DataFrame, n_full: int) -> tuple[str, str] | None:
    need = {"rfid_full", "real_fid", KEY}
    if not need <= set(g.columns) or g[list(need)].isna().all().any():
        return None
    floor = float(g["real_fid"].mean())
    shares = {}
    for label, sub in g.groupby("_label", sort=True):
        at_full = sub[sub["length"] == n_full][KEY].dropna()
        ceiling = sub["rfid_full"].dropna()
        if not len(at_full) or not len(ceiling):
            return None  # a method without a K = N row or a ceiling: not applied
        c, gen = float(ceiling.mean()), float(at_full.mean())
        if c < CEILING_OVER_FLOOR * floor or gen <= floor:
            return None
        shares[label] = (c - floor) / (gen - floor)
        if shares[label] < CEILING_SHARE:
            return None
    text = ", ".join(f"{m} {s:.0%}" for m, s in shares.items())
    return (f"reconstruction-bound (every tokenizer ceiling is >= {CEILING_OVER_FLOOR:g}x the floor {floor:.3g} and "
            f"covers >= {CEILING_SHARE:.0%} of the gap from the floor to its own K=N score: {text})",
            "a tokenizer that reconstructs the data (more tokenizer steps or width)")


def _within_noise(rows: pd.DataFrame, paired: pd.DataFrame | None) -> tuple[str, str] | None:
    m = _method_rows(rows)
    if m["method"].nunique() < 2 or KEY not in m:
        return None
    if paired is not None and len(paired) and (paired["seeds"] >= MIN_SEEDS_FOR_VERDICT).any():
        decided = (paired["seeds"] >= MIN_SEEDS_FOR_VERDICT) & ((paired["lo"] > 0) | (paired["hi"] < 0))
        if decided.any():  # the paired verdict's own rule (vltbench.reporting.paired.verdict)
            return None
        how = f"no paired difference decides ({int(paired['seeds'].max())} training seeds, 95% t intervals)"
    else:
        for _, at_k in m.groupby("K"):
            v = at_k[[KEY, f"{KEY}_std"]].to_numpy(float)
            for i in range(len(v)):
                for j in range(i + 1, len(v)):
                    noise = np.hypot(v[i, 1], v[j, 1])
                    if np.isfinite(noise) and abs(v[i, 0] - v[j, 0]) > NOISE_Z * noise:
                        return None
        how = f"every pair of methods within {NOISE_Z:g} combined stds at every K"
    return (f"every method is within noise of every other ({how})",
            f"more training seeds (--set seed=N per training, >= {MIN_SEEDS_FOR_VERDICT}) or more samples (--n-samples)")


def _guidance_flat(g: pd.DataFrame) -> tuple[str, str] | None:
    if "guidance_protocol" not in g or "cfg_margin" not in g:
        return None
    s = g[g["guidance_protocol"] == "search"]
    if not len(s):
        return None
    margin = pd.to_numeric(s["cfg_margin"], errors="coerce")
    flat = (s["cfg_scale"] == 1.0) & (margin.isna() | (margin < FLAT_MARGIN))
    share = float(flat.mean())
    if share < UNGUIDED_SHARE:
        return None
    return (f"guidance did nothing the search could see (w = 1 chosen with a flat curve in {int(flat.sum())} of "
            f"{len(s)} cells)", "more DiT training (dit.steps): the generator has not learnt the classes")


def judge(rows: pd.DataFrame, g: pd.DataFrame, paired: pd.DataFrame | None, n_full: int) -> Discriminability:
    """The verdict of one comparison group: `rows` are the table's aggregated rows (with the floor and
    ceiling rows), `g` the group's records (with _label), `paired` the paired differences of the
    generation distance (vltbench.reporting.paired; None with one method), n_full the group's N."""
    out = Discriminability()
    for found in (_precision(rows), _reconstruction_bound(g, n_full), _within_noise(rows, paired),
                  _guidance_flat(g)):
        if found is not None:
            out.ok = False
            out.reasons.append(found[0])
            out.fixes.append(found[1])
    return out
