"""Regression check: is a candidate results set worse than a baseline, beyond noise?

Fixed-percent thresholds drown benchmarks in false alarms (TorchBench), so a cell is flagged only
when it is worse by more than max(z * noise, min_effect), where the noise comes from the paired
differences over the (training seed, sampling seed) pairs both sides have or, with one pair, from each
record's bootstrap std. Only the cells both sides have are compared (the baseline's others are listed
as not checked); only identically measured cells are compared: otherwise the check refuses.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from vltbench.core import defaults
from vltbench.core.errors import UserError
from vltbench.evaluation.metrics.specs import MetricSpec, metric_spec
from vltbench.evaluation.store import guidance_protocol

SPEC_PARTS = {"spec_dataset": "dataset", "spec_metric": "metric_spec", "spec_sampler": "sampler"}
KEY = ["method", "generator", "length"]
PAIR = ["train_seed", "seed"]  # a cell's seeds: results pair on both (the same trained model, the same samples)


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
    not_checked: list[str] = field(default_factory=list)  # baseline cells / pairs / metrics the candidate lacks
    require_all: bool = False

    @property
    def failed(self) -> bool:
        """A regression, or (require_all) any baseline cell left unchecked: `vltbench check` exits 1."""
        return any(r.verdict == "regression" for r in self.rows) or (self.require_all and bool(self.not_checked))

    def to_json(self) -> str:
        def clean(v):  # NaN is not JSON
            return None if isinstance(v, float) and math.isnan(v) else v
        rows = [{k: clean(v) for k, v in asdict(r).items()} for r in self.rows]
        return json.dumps({"failed": self.failed, "z": self.z, "min_effect": self.min_effect,
                           "rows": rows, "not_checked": self.not_checked, "require_all": self.require_all,
                           "notes": self.notes}, indent=1)

    def table(self):
        """A rich Table for the terminal; `str(report)` gives plain text."""
        from rich.table import Table

        t = Table(title=f"regression check: {'FAILED' if self.failed else 'passed'} "
                        f"(threshold = max({self.z:g} x noise, min effect))",
                  caption="\n".join(self._caption()) or None, caption_justify="left")
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

    def _caption(self) -> list[str]:
        head = "not checked" + (" (--require-all: a failure)" if self.require_all else "")
        return [f"{head}: {c}" for c in self.not_checked] + self.notes

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
    protocol, spec = guidance_protocol(json.loads(row["spec_sampler"]))
    if protocol == "fixed":
        return protocol, f"'fixed' (w={spec['scale']})"
    if protocol == "search":
        return protocol, f"'search' (grid {spec.get('grid')}, scale chosen per method and K)"
    return protocol, repr(protocol)


def _per_pair(sub: pd.DataFrame, notes: list[str], side: str) -> pd.DataFrame:
    """One record per (training seed, sampling seed): if a pair was run for several checkpoints, keep the newest."""
    sub = sub.sort_values("created", na_position="first")
    dup = sub.duplicated(PAIR, keep="last")
    if dup.any():
        r = sub.iloc[0]
        notes.append(f"{side} has several records per seed pair for {r['method']} K={r['length']}: using the newest")
    return sub[~dup].set_index(PAIR)


def _pairs(index) -> str:
    """'training seed 1 (sampling seed 0)' for messages."""
    return ", ".join(f"training seed {'?' if t < 0 else t} (sampling seed {s})" for t, s in index)


def _checked(metric: str) -> MetricSpec:
    """The declaration of a metric `check` compares (vltbench.evaluation.metrics.specs): it needs a direction."""
    spec = metric_spec(metric)
    if spec is None:
        raise UserError(f"unknown metric {metric!r} to check; declare it with vltbench.evaluation.metrics.register_metric "
                        "(key, header, better='lower' or 'higher', noise_key=..., min_effect=...)")
    if spec.better is None:
        raise UserError(f"metric {metric!r} has no better direction (not 'lower' or 'higher'): it cannot regress")
    return spec


def _compare(b: pd.DataFrame, c: pd.DataFrame, spec: MetricSpec) -> tuple[float, float, float | None, str]:
    """(baseline, candidate, std of candidate - baseline, how) over the seed pairs both sides have
    (the caller passes only those): paired differences cancel what the seeds share."""
    metric = spec.key
    bv, cv = b[metric], c[metric]
    base, cand = float(bv.mean()), float(cv.mean())
    if len(bv) >= 2:
        d = cv - bv
        return base, cand, float(d.std(ddof=1) / np.sqrt(len(d))), f"paired, {len(d)} seed pairs"
    col = spec.noise_key
    stds = [float(side[col].iloc[0]) for side in (b, c) if col is not None and col in side
            and not pd.isna(side[col].iloc[0])]
    if stds:  # one pair: each record's own bootstrap std, on both sides
        return base, cand, float(np.sqrt(2 * np.mean(np.square(stds)))), "bootstrap std"
    if spec.exact:  # a count (FLOPs, parameters) has no noise: any change is real
        return base, cand, 0.0, "exact"
    return base, cand, None, "no noise estimate"


def _select(df: pd.DataFrame, key: tuple) -> pd.DataFrame:
    return df[np.logical_and.reduce([df[k] == v for k, v in zip(KEY, key)])]


def _gate(b: pd.DataFrame, c: pd.DataFrame) -> None:
    pairs = b.merge(c, on=KEY, suffixes=("_b", "_c"))[KEY].drop_duplicates().sort_values(KEY)
    if pairs.empty:
        bm, cm = sorted(set(b["method"])), sorted(set(c["method"]))
        example = f"{cm[0]}={bm[0]}" if len(bm) == 1 and len(cm) == 1 else "NEW=BASELINE"
        raise UserError("nothing to compare: baseline has "
                        f"{bm} and candidate has {cm} with no (method, generator, length) in common; pick the right "
                        "baseline, or hold a new method to an existing one's numbers with "
                        f"--method-map {example} (method_map={{NEW: BASELINE}} in the API)")
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


def checked_metrics(b: pd.DataFrame) -> tuple[str, ...]:
    """Every ranked leaderboard metric (one with a better direction) that the baseline records carry."""
    from vltbench.evaluation.metrics.specs import metric_specs
    return tuple(s.key for s in metric_specs() if s.is_ranked and s.column and s.key in b and b[s.key].notna().any())


def discriminability_notes(df: pd.DataFrame, side: str) -> list[str]:
    """One line per comparison group of `side` that cannot tell methods apart (its verdicts mean little)."""
    from .tables import leaderboard

    return [f"{side} {t.title.split(':')[0].lower()} ({t.title.split(': ', 1)[-1]}): {t.verdict.line}"
            for t in leaderboard(df) if not t.verdict.ok]


def check(baseline_df: pd.DataFrame, candidate_df: pd.DataFrame, *, min_effect: dict | None = None,
          z: float = defaults.Z, metrics: tuple[str, ...] | None = None, method_map: dict | None = None,
          lengths: tuple[int, ...] | None = None, require_all: bool = False) -> CheckReport:
    """Compare candidate cells to baseline cells with the same (method, generator, length), paired on
    (training seed, sampling seed): only the pairs both sides have are compared; baseline cells, pairs
    or metrics the candidate lacks are listed as not checked (a failure only with require_all).

    metrics: default every ranked metric the baseline carries. Each metric's direction, noise column
    (one pair) and minimum effect come from its declaration (vltbench.evaluation.metrics.specs); min_effect:
    per metric, overrides the declared one. lengths: compare only these K. method_map renames
    candidate methods (e.g. {"my-merge": "merge"}) to check a new method against an existing one's numbers."""
    b, c = baseline_df.copy(), candidate_df.copy()
    if b.empty or c.empty:
        raise UserError(f"nothing to compare: the {'baseline' if b.empty else 'candidate'} has no valid records")
    if method_map:
        c["method"] = c["method"].replace(method_map)
    for f in (b, c):
        f["generator"] = f["generator"].fillna("")
        f["train_seed"] = pd.to_numeric(f["train_seed"], errors="coerce").fillna(-1).astype(int)
    if lengths:
        b, c = b[b["length"].isin(lengths)], c[c["length"].isin(lengths)]
        if b.empty or c.empty:
            raise UserError(f"--lengths {','.join(map(str, lengths))}: the {'baseline' if b.empty else 'candidate'} "
                            "has no records at these lengths")
    metrics = tuple(metrics) if metrics else checked_metrics(b)
    specs = {m: _checked(m) for m in metrics}
    effect = {m: s.min_effect for m, s in specs.items() if s.min_effect is not None}
    effect.update(min_effect or {})
    _gate(b, c)

    notes: list[str] = []
    not_checked: list[str] = []
    no_noise: set[str] = set()
    rows: list[CheckRow] = []
    cells = c[KEY].drop_duplicates()
    new = c.merge(b[KEY].drop_duplicates(), on=KEY, how="left", indicator=True)
    new = new.loc[new["_merge"] == "left_only", KEY].drop_duplicates()
    if len(new):
        notes.append("no baseline for: " + ", ".join(f"{m} K={k}" for m, _, k in new.itertuples(index=False)))
    compared = 0
    absent: dict[str, list[str]] = {}  # method -> lengths the candidate has no records for
    for key, bsub in b.groupby(KEY, sort=True):
        method, gen, length = key
        name = f"{method} K={length}" + (f" [{gen}]" if gen not in ("", "joint") else "")
        if not ((cells["method"] == method) & (cells["generator"] == gen) & (cells["length"] == length)).any():
            absent.setdefault(name.replace(f" K={length}", ""), []).append(str(length))
            continue
        csub = _select(c, key)
        common = set(bsub["comparable_key"]) & set(csub["comparable_key"])
        # the gate guarantees a common spec whenever the candidate has this cell
        bsub, csub = bsub[bsub["comparable_key"].isin(common)], csub[csub["comparable_key"].isin(common)]
        bs, cs = _per_pair(bsub, notes, "baseline"), _per_pair(csub, notes, "candidate")
        shared = bs.index.intersection(cs.index)
        if lost := [p for p in bs.index if p not in shared]:
            not_checked.append(f"{name}: {_pairs(lost)}: no candidate record")
        if len(shared) == 0:
            continue
        compared += 1
        bs, cs = bs.loc[shared], cs.loc[shared]
        for m in metrics:
            if m not in bs or bs[m].isna().all():
                continue  # nothing to hold the candidate to
            have = bs[m].notna()
            if m not in cs or cs.loc[have, m].isna().any():
                not_checked.append(f"{name}: {m} missing in the candidate")
                rows.append(CheckRow(method, gen or None, int(length), m, float(bs[m].mean()), None, None, None,
                                     float(effect.get(m, 0.0)), "missing", "—"))
                continue
            base, cand, noise, how = _compare(bs[have], cs[have], specs[m])
            thr_min = float(effect.get(m, 0.0))
            if noise is None and thr_min == 0:
                no_noise.add(m)  # any difference would fail: nothing says what is noise
                continue
            delta = cand - base
            thr = max(z * noise, thr_min) if noise is not None else thr_min
            worse = -delta if specs[m].better == "higher" else delta
            verdict = "regression" if worse > thr else "improved" if -worse > thr else "ok"
            rows.append(CheckRow(method, gen or None, int(length), m, base, cand, delta, noise, thr, verdict, how))
    not_checked += [f"{m} K={', '.join(ks)}: no candidate records" for m, ks in absent.items()]
    if compared == 0:
        raise UserError("nothing to compare: baseline and candidate share no (training seed, sampling seed) pair for "
                        "any cell; rerun the candidate with the baseline's seeds (--seeds for sampling, "
                        "--set seed=N for training)")
    if no_noise:
        notes.append(f"not checked for want of a noise estimate (one seed pair, no bootstrap std, no min effect "
                     f"declared): {', '.join(sorted(no_noise))}")
    notes.append("min effect: " + ", ".join(f"{m}={effect.get(m, 0.0):g}" for m in metrics))
    notes += discriminability_notes(baseline_df, "baseline") + discriminability_notes(candidate_df, "candidate")
    return CheckReport(rows=rows, z=z, min_effect={m: effect.get(m, 0.0) for m in metrics}, notes=notes,
                       not_checked=not_checked, require_all=require_all)
