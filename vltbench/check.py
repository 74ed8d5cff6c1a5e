"""Regression check: is a candidate results set worse than a baseline, beyond noise?

Fixed-percent thresholds drown benchmarks in false alarms (TorchBench), so a cell is flagged only
when it is worse by more than max(z * noise, min_effect), where the noise comes from the seeds
(paired on shared seeds) or, with one seed, from each record's bootstrap std.
Only identically measured cells are compared: otherwise the check refuses.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .errors import UserError
from .metrics.specs import MetricSpec, metric_spec

SPEC_PARTS = {"spec_dataset": "dataset", "spec_metric": "metric_spec", "spec_sampler": "sampler"}
KEY = ["method", "generator", "length"]


@dataclass
class CheckRow:
    method: str
    generator: str | None
    length: int
    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None  # candidate - baseline (positive = higher)
    noise: float | None  # std of the delta estimate
    threshold: float
    verdict: str  # ok | regression | improved | missing
    how: str  # noise model used


@dataclass
class CheckReport:
    rows: list[CheckRow]
    z: float
    min_effect: dict
    notes: list[str] = field(default_factory=list)
    fail_on_missing: bool = True

    @property
    def failed(self) -> bool:
        bad = {"regression", "missing"} if self.fail_on_missing else {"regression"}
        return any(r.verdict in bad for r in self.rows)

    def to_json(self) -> str:
        def clean(v):  # NaN is not JSON
            return None if isinstance(v, float) and math.isnan(v) else v
        rows = [{k: clean(v) for k, v in asdict(r).items()} for r in self.rows]
        return json.dumps({"failed": self.failed, "z": self.z, "min_effect": self.min_effect,
                           "rows": rows, "notes": self.notes}, indent=1)

    def table(self):
        """A rich Table for the terminal; `str(report)` gives plain text."""
        from rich.table import Table

        t = Table(title=f"regression check: {'FAILED' if self.failed else 'passed'} "
                        f"(threshold = max({self.z:g} x noise, min effect))",
                  caption="\n".join(self.notes) or None, caption_justify="left")
        left = ("method", "metric", "verdict", "noise from")
        for h in ("method", "K", "metric", "baseline", "candidate", "delta", "noise", "threshold", *left[2:]):
            t.add_column(h, justify="left" if h in left else "right")
        style = {"regression": "bold red", "missing": "yellow", "improved": "green", "ok": ""}
        for r in self.rows:
            name = r.method if r.generator in (None, "joint") else f"{r.method} [{r.generator}]"
            t.add_row(name, str(r.length), r.metric, _f(r.baseline), _f(r.candidate),
                      _f(r.delta, sign=True), _f(r.noise), _f(r.threshold),
                      f"[{style[r.verdict]}]{r.verdict}[/]" if style[r.verdict] else r.verdict, r.how)
        return t

    def __str__(self) -> str:
        from rich.console import Console

        con = Console(width=140, record=True, force_terminal=False, color_system=None, file=_Null())
        con.print(self.table())
        return con.export_text()


class _Null:
    def write(self, s):
        pass

    def flush(self):
        pass


def _f(v, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:+.3g}" if sign else f"{v:.3g}"


def _spec_diff(b: pd.Series, c: pd.Series) -> str:
    """Name the first differing field, e.g. 'metric_spec.n_samples (baseline 1000, candidate 500)'."""
    for col, part in SPEC_PARTS.items():
        if b[col] != c[col]:
            bj, cj = json.loads(b[col]), json.loads(c[col])
            for k in sorted(set(bj) | set(cj)):
                if bj.get(k) != cj.get(k):
                    return f"{part}.{k} (baseline {bj.get(k)!r}, candidate {cj.get(k)!r})"
            return part
    return "nothing"


def _protocol(row: pd.Series) -> tuple[str | None, str]:
    """(guidance protocol, how it reads in a message), e.g. ('fixed', "'fixed' (w=1.5)")."""
    s = json.loads(row["spec_sampler"])
    spec = s.get("guidance") if isinstance(s.get("guidance"), dict) else {}
    protocol = spec.get("protocol") or ("fixed" if "cfg_scale" in s else None)
    if protocol == "fixed":
        return protocol, f"'fixed' (w={spec.get('scale', s.get('cfg_scale'))})"
    if protocol == "search":
        return protocol, f"'search' (grid {spec.get('grid')}, scale chosen per method and K)"
    return protocol, repr(protocol)


def _per_seed(sub: pd.DataFrame, notes: list[str], side: str) -> pd.DataFrame:
    """One record per seed: if a seed was run for several checkpoints, keep the newest record."""
    sub = sub.sort_values("created", na_position="first")
    dup = sub["seed"].duplicated(keep="last")
    if dup.any():
        r = sub.iloc[0]
        notes.append(f"{side} has several records per seed for {r['method']} K={r['length']}: using the newest")
    return sub[~dup].set_index("seed")


def _checked(metric: str) -> MetricSpec:
    """The declaration of a metric `check` compares (vltbench.metrics.specs): it needs a direction."""
    spec = metric_spec(metric)
    if spec is None:
        raise UserError(f"unknown metric {metric!r} to check; declare it with vltbench.metrics.register_metric "
                        "(key, header, better='lower' or 'higher', noise_key=..., min_effect=...)")
    if spec.better is None:
        raise UserError(f"metric {metric!r} has no better direction (not 'lower' or 'higher'): it cannot regress")
    return spec


def _compare(b: pd.DataFrame, c: pd.DataFrame, spec: MetricSpec) -> tuple[float, float, float | None, str]:
    """(baseline, candidate, std of candidate - baseline, how); values are means over the seeds used."""
    metric = spec.key
    bv, cv = b[metric].dropna(), c[metric].dropna()
    shared = bv.index.intersection(cv.index)
    if len(shared) >= 2:  # paired on shared seeds: seed-to-seed variation cancels
        d = cv[shared] - bv[shared]
        return (float(bv[shared].mean()), float(cv[shared].mean()), float(d.std(ddof=1) / np.sqrt(len(d))),
                f"paired, {len(d)} seeds")
    base, cand = float(bv.mean()), float(cv.mean())
    nb, nc = len(bv), len(cv)
    dof = max(nb - 1, 0) + max(nc - 1, 0)
    if dof > 0:  # pooled per-seed std from whichever side has several seeds
        var = ((nb - 1) * bv.var(ddof=1) if nb > 1 else 0) + ((nc - 1) * cv.var(ddof=1) if nc > 1 else 0)
        return base, cand, float(np.sqrt(var / dof * (1 / nb + 1 / nc))), f"seed std, {nb}+{nc} seeds"
    col = spec.noise_key
    stds = [v for side in (b, c) if col is not None and col in side for v in side[col].dropna()]
    if stds:  # one seed each: the estimate's own bootstrap std, on both sides
        return base, cand, float(np.sqrt(2 * np.mean(np.square(stds)))), "bootstrap std"
    return base, cand, None, "no noise estimate"


def _select(df: pd.DataFrame, key: tuple) -> pd.DataFrame:
    return df[np.logical_and.reduce([df[k] == v for k, v in zip(KEY, key)])]


def _gate(b: pd.DataFrame, c: pd.DataFrame) -> None:
    pairs = b.merge(c, on=KEY, suffixes=("_b", "_c"))[KEY].drop_duplicates().sort_values(KEY)
    if pairs.empty:
        raise UserError("nothing to compare: baseline has "
                        f"{sorted(set(b['method']))} and candidate has {sorted(set(c['method']))} "
                        "with no (method, generator, length) in common; pick the right baseline or use method_map")
    for _, p in pairs.iterrows():
        bs, cs = _select(b, tuple(p)), _select(c, tuple(p))
        if set(bs["comparable_key"]) & set(cs["comparable_key"]):
            continue
        (pb, tb), (pc, tc) = _protocol(bs.iloc[0]), _protocol(cs.iloc[0])
        if pb != pc:  # gFID under different guidance protocols is not the same quantity
            raise UserError(f"guidance protocols differ for {p['method']} K={p['length']}: baseline used guidance "
                            f"protocol {tb}, candidate {tc}; compare results measured with the same protocol "
                            f"(set sampler.guidance={pb} for the candidate or choose a baseline measured with {pc})")
        raise UserError(f"baseline and candidate are not comparable for {p['method']} K={p['length']}: "
                        f"{_spec_diff(bs.iloc[0], cs.iloc[0])} differs; rerun the candidate with the "
                        "baseline's settings or choose a matching baseline")


def check(baseline_df: pd.DataFrame, candidate_df: pd.DataFrame, *, min_effect: dict | None = None,
          z: float = 2.0, metrics: tuple[str, ...] = ("gfid", "rfid"), method_map: dict | None = None,
          fail_on_missing: bool = True) -> CheckReport:
    """Compare candidate cells to baseline cells with the same (method, generator, length).

    Each metric's direction, noise column (one seed) and default minimum effect come from its
    declaration (vltbench.metrics.specs). min_effect: per metric, overrides the declared one.
    method_map renames candidate methods (e.g. {"my-merge": "merge"}) to check a new method against
    an existing one's numbers."""
    specs = {m: _checked(m) for m in metrics}
    effect = {m: s.min_effect for m, s in specs.items() if s.min_effect is not None}
    effect.update(min_effect or {})
    b, c = baseline_df.copy(), candidate_df.copy()
    if b.empty or c.empty:
        raise UserError(f"nothing to compare: the {'baseline' if b.empty else 'candidate'} has no valid records")
    if method_map:
        c["method"] = c["method"].replace(method_map)
    for f in (b, c):
        f["generator"] = f["generator"].fillna("")
    _gate(b, c)

    notes: list[str] = []
    rows: list[CheckRow] = []
    cand_methods = set(c["method"])
    if skipped := sorted(set(b["method"]) - cand_methods):
        notes.append(f"not in candidate, not checked: {', '.join(skipped)}")
    new = c.merge(b[KEY].drop_duplicates(), on=KEY, how="left", indicator=True)
    new = new.loc[new["_merge"] == "left_only", KEY].drop_duplicates()
    if len(new):
        notes.append("no baseline for: " + ", ".join(f"{m} K={k}" for m, _, k in new.itertuples(index=False)))

    for key, bsub in b[b["method"].isin(cand_methods)].groupby(KEY, sort=True):
        method, gen, length = key
        csub = _select(c, key)
        common = set(bsub["comparable_key"]) & set(csub["comparable_key"])
        if common:  # the gate guarantees a common spec whenever the candidate has this cell
            bsub, csub = bsub[bsub["comparable_key"].isin(common)], csub[csub["comparable_key"].isin(common)]
        bs, cs = _per_seed(bsub, notes, "baseline"), _per_seed(csub, notes, "candidate")
        if len(cs) and (lost := sorted(set(bs.index) - set(cs.index))):
            notes.append(f"candidate lacks seeds {lost} for {method} K={length}: compared on the others")
        for m in metrics:
            if m not in bs or bs[m].isna().all():
                continue  # nothing to hold the candidate to
            base = float(bs[m].mean())
            thr_min = float(effect.get(m, 0.0))
            if m not in cs or cs[m].isna().all():
                rows.append(CheckRow(method, gen or None, int(length), m, base, None, None, None, thr_min,
                                     "missing", "—"))
                continue
            base, cand, noise, how = _compare(bs, cs, specs[m])
            delta = cand - base
            thr = max(z * noise, thr_min) if noise is not None else thr_min
            worse = -delta if specs[m].better == "higher" else delta
            verdict = "regression" if worse > thr else "improved" if -worse > thr else "ok"
            rows.append(CheckRow(method, gen or None, int(length), m, base, cand, delta, noise,
                                 thr, verdict, how))
    notes.append("min effect: " + ", ".join(f"{m}={effect.get(m, 0.0):g}" for m in metrics))
    return CheckReport(rows=rows, z=z, min_effect={m: effect.get(m, 0.0) for m in metrics}, notes=notes,
                       fail_on_missing=fail_on_missing)
