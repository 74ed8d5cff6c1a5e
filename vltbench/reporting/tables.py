"""Leaderboard tables: one per comparable group (same dataset, metric spec and sampler).

Numbers measured differently (other sample counts, extractor, sampler or guidance protocol) never
share a table, and each table says in its header exactly how its numbers were measured. Each table
also carries reference rows that are never ranked: the metric's floor at this n (held-out real
images) and, per method, its tokenizer's ceiling (reconstruction at K = N).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid

from vltbench.evaluation.metrics.specs import column_specs, fd_name, metric_spec
from vltbench.evaluation.store import guidance_protocol

from .discriminability import Discriminability, judge


@dataclass
class Column:
    key: str
    header: str
    better: str | None = None  # "lower" | "higher" | None (no direction)
    scale: float = 1.0
    values: bool = False  # show the distinct values over seeds (e.g. the chosen CFG scale), not a mean
    ranked: bool = True  # best method row marked (when better is set)
    noise_key: str | None = None  # std column shown as ± when a cell has one seed
    exact: bool = False  # an exact count: never shown with ±
    trivial_at_full: bool = False  # perfect at K = N by definition: K = N never marked best
    per_family: bool = False  # ranked only among methods of one family and representation


@dataclass
class Table:
    title: str
    group: dict  # how the numbers were measured: dataset, extractor, n_samples, sampler...
    columns: list[Column]
    rows: pd.DataFrame  # row (method|floor|ceiling), method, K, seeds, family, <key> and <key>_std, pareto
    best: dict[str, set[int]] = field(default_factory=dict)  # column key -> row positions
    pareto: list[tuple[str, int]] = field(default_factory=list)
    auc: dict[str, float] = field(default_factory=dict)
    auc_range: tuple[float, float] | None = None  # GFLOPs range the AUC integrates over
    notes: list[str] = field(default_factory=list)
    # metric header -> paired method-vs-method differences per K (vltbench.reporting.paired), when 2+ methods
    differences: dict[str, pd.DataFrame] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)  # row label -> method family
    n_tokens: int = 0
    headline: str = "gfid"  # the column the front, AUC and first differences use ("kid" at n <= feature dim)
    # could these records tell methods apart at all (vltbench.reporting.discriminability)
    verdict: Discriminability = field(default_factory=Discriminability)
    # note -> the column keys it explains; a view that shows none of them leaves it out (notes not here: always)
    note_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _columns(df: pd.DataFrame, label: str | None) -> list[Column]:
    """The declared metrics (vltbench.evaluation.metrics.specs) present in this group, in declaration order."""
    cols = [Column(s.key, s.header + (" (per family)" if s.per_family else ""), s.better, s.scale, s.values,
                   s.ranked, s.noise_key, s.exact, s.trivial_at_full, s.per_family)
            for s in column_specs(df.columns, label)]
    return [c for c in cols if df[c.key].notna().any()]


def _recipe(sub: pd.DataFrame) -> pd.Series:
    """What tells a method's trainings apart other than their seed: the recipe hash, else the checkpoint."""
    if "recipe_hash" in sub and sub["recipe_hash"].notna().all():
        return sub["recipe_hash"].astype(str)
    return sub["checkpoint_hash"].astype(str)


def row_labels(g: pd.DataFrame) -> pd.Series:
    """Method name, plus generator / checkpoint only when a method has several in this group.
    Checkpoints that differ only by their training seed are seeds of one row."""
    def label(sub: pd.DataFrame) -> pd.Series:
        out = sub["method"].astype(str)
        if sub["generator"].nunique(dropna=False) > 1:
            out = out + " [" + sub["generator"].astype(str) + "]"
        if _recipe(sub).nunique(dropna=False) > 1:
            out = out + " @" + sub["checkpoint_hash"].astype(str).str[:8]
        return out
    return pd.concat([label(sub) for _, sub in g.groupby("method", sort=False)]).loc[g.index]


def _aggregate(g: pd.DataFrame, cols: list[Column]) -> pd.DataFrame:
    rows = []
    for (label, k), sub in g.groupby(["_label", "length"], sort=True):
        row = {"row": "method", "method": label, "K": int(k), "seeds": len(sub), "family": sub["family"].iloc[0]}
        for c in cols:
            vals = sub[c.key].dropna() * c.scale  # NaN = unavailable: skipped, never 0
            if c.values:
                row[c.key] = "/".join(f"{v:g}" for v in sorted(vals.unique())) or np.nan
                continue
            row[c.key] = vals.mean() if len(vals) else np.nan
            if len(vals) > 1:  # round-off spread of equal values is 0, not 1e-17
                std = vals.std(ddof=1)
                row[f"{c.key}_std"] = 0.0 if std <= 1e-9 * max(1.0, abs(vals.mean())) else std
            elif c.noise_key is not None and c.noise_key in sub:
                row[f"{c.key}_std"] = sub[c.noise_key].mean() * c.scale
            else:
                row[f"{c.key}_std"] = np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _reference_rows(g: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """rows with the floor row first and each method's ceiling row after its own rows.

    Floor: held-out real images vs the same reference at the same n (no generator can do better at
    this n). Ceiling: this tokenizer's reconstructions at K = N (the best gFID its latents allow)."""
    def ref(kind, label, k, mean, std):
        return {"row": kind, "method": label, "K": k, "seeds": pd.NA, "gfid": mean, "gfid_std": std}

    def with_kid(row, sub, key):  # the same reference in the KID column, when the records carry it
        if key in sub and sub[key].notna().any():
            row["kid"], row["kid_std"] = stat(sub, key), stat(sub, metric_spec(key).noise_key)
        return row

    def stat(sub, key):
        v = sub[key].dropna() if key in sub else pd.Series(dtype=float)
        return v.mean() if len(v) else np.nan

    real, full = metric_spec("real_fid"), metric_spec("rfid_full")
    parts = []
    if real.key in g and g[real.key].notna().any():
        label = f"real (held-out, n={g['n_samples'].iloc[0]})"
        floor = with_kid(ref("floor", label, pd.NA, stat(g, real.key), stat(g, real.noise_key)), g, "real_kid")
        parts.append(pd.DataFrame([floor]))
    ceilings: dict[str, list[dict]] = {}  # row label -> ceiling rows shown after its rows
    if full.key in g:
        have = g.dropna(subset=[full.key])
        for label, sub in have.groupby("_label", sort=True):  # one row per recipe: its seeds averaged
            per_ckpt = sub.groupby("checkpoint_hash")[full.key].mean()
            std = per_ckpt.std(ddof=1) if len(per_ckpt) > 1 else stat(sub, full.noise_key)
            row = ref("ceiling", f"{label} tokenizer @K=N (recon)", sub["n_tokens"].max(), per_ckpt.mean(), std)
            row["seeds"] = len(per_ckpt) if len(per_ckpt) > 1 else pd.NA
            ceilings[label] = [with_kid(row, sub, "rkid_full")]
    for label, sub in rows.groupby("method", sort=False):
        parts += [sub] + ([pd.DataFrame(ceilings[label])] if label in ceilings else [])
    out = pd.concat(parts, ignore_index=True)
    return out.astype({"K": "Int64", "seeds": "Int64"})


def _best(t: Table, rows: pd.DataFrame, n_full) -> None:
    """Best per ranked column among method rows only; a per-family column only among methods sharing a
    family and representation (known), so different representations are never ranked against each other."""
    method = (rows["row"] == "method").to_numpy()
    k = rows["K"].fillna(-1).to_numpy(int)
    fam = (rows["family"].astype(str) + " | " + rows["representation"].astype(str)).where(rows["family"].notna())
    for c in t.columns:
        if not (c.better and c.ranked):
            continue
        ok = method & rows[c.key].notna().to_numpy()
        if c.trivial_at_full and pd.notna(n_full):
            ok &= k != n_full
        pools = [ok]
        if c.per_family:
            pools = [ok & (fam == f).to_numpy() for f in fam[ok].dropna().unique()]
            pools = [p for p in pools if rows.loc[p, "method"].nunique() > 1]  # one method: nothing to rank
        for p in pools:
            v = rows[c.key].to_numpy(float)
            if len(np.unique(v[p])) > 1:  # all equal: nothing to mark
                target = v[p].min() if c.better == "lower" else v[p].max()
                t.best.setdefault(c.key, set()).update(np.flatnonzero(p & (v == target)).tolist())


def pareto_mask(cost: np.ndarray, err: np.ndarray) -> np.ndarray:
    """True where no other point is at most as costly and at most as bad, and better in one."""
    cost, err = np.asarray(cost, float), np.asarray(err, float)
    ok = ~(np.isnan(cost) | np.isnan(err))
    mask = np.zeros(len(cost), bool)
    for i in np.flatnonzero(ok):
        dom = ok & (cost <= cost[i]) & (err <= err[i]) & ((cost < cost[i]) | (err < err[i]))
        mask[i] = not dom.any()
    return mask


def auc_log_gflops(curves: dict[str, tuple]) -> tuple[dict[str, float], tuple[float, float] | None, list[str]]:
    """Trapezoid area under each gFID(log10 GFLOPs) curve over the GFLOPs range all curves span.

    Returns (area per method, (lo, hi) in GFLOPs or None, notes). Lower area = better trade-off."""
    notes, pts = [], {}
    for name, (x, y) in curves.items():
        x, y = np.asarray(x, float), np.asarray(y, float)
        keep = ~(np.isnan(x) | np.isnan(y)) & (x > 0)
        s = pd.Series(y[keep]).groupby(np.log10(x[keep])).mean()  # average duplicates at one cost
        if len(s) < 2:
            notes.append(f"{name}: AUC needs ≥2 lengths with gFID and GFLOPs")
            continue
        pts[name] = (s.index.to_numpy(), s.to_numpy())
    if not pts:
        return {}, None, notes
    lo, hi = max(x[0] for x, _ in pts.values()), min(x[-1] for x, _ in pts.values())
    if lo >= hi:
        notes.append("GFLOPs ranges of the methods do not overlap: no common-range AUC")
        return {}, None, notes
    auc = {}
    for name, (x, y) in pts.items():
        xs = np.unique(np.concatenate([[lo, hi], x[(x > lo) & (x < hi)]]))
        auc[name] = float(trapezoid(np.interp(xs, x, y), xs))
    return auc, (10 ** lo, 10 ** hi), notes


def _fmt(v: float | str) -> str:
    if isinstance(v, str):  # already text (e.g. the CFG scales chosen over seeds)
        return v
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return "—"
    a = abs(v)
    return f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 1 else f"{v:.3g}"


def guidance_text(sampler: dict, short: bool = False) -> str:
    """How the CFG scale was set, from the sampler identity (old records: sampler.cfg_scale = fixed)."""
    protocol, spec = guidance_protocol(sampler)
    if protocol == "search":
        grid, ref = spec.get("grid"), str(spec.get("select_reference"))
        extra = (spec.get("extend") or {}).get("max_extra")  # absent: records from before the extension
        if short:
            return f"guidance searched over {grid}" + (f" (+ up to {extra} to bracket)" if extra else "")
        ref = ref if " " in ref else f"{ref} statistics"  # a split name ("train") or a phrase
        grid = f"{grid}, extended by up to {extra} scales until the best is bracketed," if extra else grid
        return (f"searched per (method, K) over grid {grid} on {spec.get('n_select')} samples with their own "
                f"seeds ({spec.get('select_seed')}) vs {ref}; unguided column at w=1")
    if protocol == "fixed":
        w = spec["scale"]
        if per_k := spec.get("per_length"):  # sampler.cfg_scale_per_length (upstream's evaluation)
            ws = ", ".join(f"K={k}: {v:g}" for k, v in sorted(per_k.items(), key=lambda kv: int(kv[0])))
            return (f"guidance fixed per K ({ws}; else {w:g})" if short
                    else f"fixed per K ({ws}; other K w={w:g}) for every method (per-position for merged views)")
        return f"guidance fixed w={w:g}" if short else f"fixed w={w:g} for every method (per-position for merged views)"
    return "guidance unknown" if short else f"unknown protocol {protocol!r}"


def _describe(g: pd.DataFrame) -> dict:
    r = g.iloc[0]
    sampler = json.loads(r["spec_sampler"])
    return {
        "dataset": f"{r['dataset']} (manifest {str(r['manifest_hash'])[:12]}, {r['image_size']} px)",
        "metric": f"{r['metric_label']} via {r['extractor_id']}",
        "samples": f"n_samples={r['n_samples']} generated vs n_ref={r['n_ref']} ({r['ref_split']})",
        "sampler": ", ".join(f"{k}={v}" for k, v in sorted(sampler.items()) if k not in ("guidance", "cfg_scale")),
        "guidance": guidance_text(sampler),
        "comparable_key": r["comparable_key"],
    }


def _gfid_header(t: Table) -> str:
    """The group's generation distance as its column says it: gFID, or gFD_<extractor>."""
    return next((c.header for c in t.columns if c.key == "gfid"), "gFID")


def _headline_header(t: Table) -> str:
    """The header of the column the table's front, AUC and first differences are computed on."""
    return next((c.header for c in t.columns if c.key == t.headline), _gfid_header(t))


def feature_dim(extractor_id: str | None) -> int | None:
    """The feature dimension of a registered extractor, from its class (None: unknown or unregistered)."""
    from vltbench.core.registry import extractors
    from vltbench.evaluation.extractors.base import INCEPTION_ID_PREFIX

    name = str(extractor_id or "").split(":", 1)[0]
    name = "inception" if name == INCEPTION_ID_PREFIX else name  # the id names the weights, not the entry
    try:
        dim = getattr(extractors.get(name), "dim", None) if name in extractors else None
    except Exception:  # noqa: BLE001 - a plugin that fails to import: the dimension is unknown
        return None
    return dim if isinstance(dim, int) else None


def headline_key(g: pd.DataFrame) -> str:
    """"kid" when the group's sample counts are at most the feature dimension (the covariance behind a
    Fréchet distance is then singular and FD strongly biased, KID unbiased) and its records carry KID
    with its floor; else "gfid"."""
    dim = feature_dim(g["extractor_id"].iloc[0])
    n = min(pd.to_numeric(g["n_samples"], errors="coerce").min(), pd.to_numeric(g["n_ref"], errors="coerce").min())
    has_kid = all(k in g and g[k].notna().any() for k in ("kid", "real_kid"))
    return "kid" if dim is not None and n <= dim and has_kid else "gfid"


def _reference_notes(t: Table, g: pd.DataFrame) -> list[tuple[tuple[str, ...], str]]:
    """(the column keys a note explains, the note), in the order the page prints them."""
    kinds = set(t.rows["row"])
    notes = []
    gname = _gfid_header(t)
    fd = gname[1:]
    if t.headline == "kid":
        notes.append((("kid",), "KID: unbiased at any n (polynomial-kernel MMD² over random subsets, ± its std over "
                      f"subsets); {gname} is shown second: with n at most the feature dimension its covariance is singular"))
    if "floor" in kinds:
        notes.append((("gfid",), f"real (held-out): {fd} of held-out real images vs the same reference at the same n, "
                      "the floor no generator reaches at this n; not ranked"
                      + ("; its KID stands in the KID column" if t.headline == "kid" else "")))
    if "ceiling" in kinds:
        notes.append((("gfid",), f"<method> tokenizer @K=N (recon): {fd} of that tokenizer's reconstructions at K=N, "
                      f"the best {gname} its latents allow; not ranked"))
    if any(c.key == "cfg_scale" for c in t.columns):
        notes.append((("cfg_scale",), f"CFG w: the guidance scale the {gname} of that row was measured at "
                      "(a/b: different scales chosen for different seeds); not ranked"))
    if any(c.key == "xlen_distance" for c in t.columns):
        notes.append((("xlen_distance",), "x-len dist→N: cross-length consistency with the K=N sample (0 at K=N, ~1 = "
                      "as different as another sample of the class); lower is better, K=N not ranked"))
    for c in (c for c in t.columns if c.per_family):
        have = g.dropna(subset=[c.key])
        rep = have.groupby("_label", sort=True).agg(family=("family", "first"),
                                                     rep=("alignment_representation", "first"))
        text = "; ".join(f"{m} ({r.family or 'family unknown'}): {r.rep or 'unknown'}" for m, r in rep.iterrows())
        notes.append(((c.key,), f"{metric_spec(c.key).header}: per family; not comparable across families "
                      f"(representation: {text}); best marked only among methods of one family and representation"))
    return notes


def _unavailable_notes(g: pd.DataFrame, shown: set[str]) -> list[tuple[tuple[str, ...], str]]:
    reasons: dict[str, set[str]] = {}
    for u in g["unavailable"].dropna():
        for k, why in json.loads(u).items():
            reasons.setdefault(k, set()).add(str(why))
    return [((k,), f"{k} not available: {'; '.join(sorted(w))}") for k, w in sorted(reasons.items()) if k not in shown]


def comparable_groups(df: pd.DataFrame) -> list[pd.DataFrame]:
    """Records that may share a table, biggest group first (stable numbering for tables and plots)."""
    groups = sorted(df.groupby("comparable_key", sort=False), key=lambda kv: (-len(kv[1]), kv[0]))
    return [g for _, g in groups]


def leaderboard(df: pd.DataFrame) -> list[Table]:
    """One Table per comparable group, rows = method x length (seeds averaged)."""
    if df.empty:
        return []
    tables = []
    for i, g in enumerate(comparable_groups(df), 1):
        g = g.assign(_label=row_labels(g))
        for c in ("family", "alignment_representation"):  # frames from before these columns existed
            if c not in g:
                g[c] = None
        cols = _columns(g, g["metric_label"].iloc[0])
        headline = headline_key(g)
        if headline != "gfid":  # the headline column first, then the others in declaration order
            cols = [c for c in cols if c.key == headline] + [c for c in cols if c.key != headline]
        rows = _aggregate(g, cols)
        if "gfid" in rows:  # the reference rows show their FID in the gFID column
            rows = _reference_rows(g, rows)
        rows["representation"] = rows["method"].map(g.groupby("_label")["alignment_representation"].first())
        r0 = g.iloc[0]
        title = (f"Group {i}: {r0['dataset']} · {fd_name(r0['metric_label'], 'g')} · n={r0['n_samples']} · "
                 f"{guidance_text(json.loads(r0['spec_sampler']), short=True)}")
        if headline != "gfid":
            dim = feature_dim(r0["extractor_id"])
            title += (f" · KID leads: n ≤ {dim} feature dims, where the Fréchet distance's covariance is singular "
                      f"and {fd_name(r0['metric_label'], 'g')} strongly biased (shown second)")
        t = Table(title=title, group=_describe(g), columns=cols, rows=rows, headline=headline)
        _best(t, rows, g["n_tokens"].max())
        method = rows["row"] == "method"
        has_front = {headline, "sampling_gflops"} <= set(rows.columns)
        rows["pareto"] = False
        if has_front:
            rows.loc[method, "pareto"] = pareto_mask(rows.loc[method, "sampling_gflops"], rows.loc[method, headline])
        t.pareto = [(m, k) for m, k in rows.loc[rows["pareto"], ["method", "K"]].itertuples(index=False)]
        if has_front:
            curves = {m: (s["sampling_gflops"], s[headline]) for m, s in rows[method].groupby("method", sort=True)}
            t.auc, t.auc_range, auc_notes = auc_log_gflops(curves)
            t.notes += auc_notes
        t.notes = ["± = std over seeds when seeds > 1, else the metric's bootstrap std"] + t.notes
        keyed = _reference_notes(t, g) + _unavailable_notes(g, {c.key for c in cols})
        t.notes += [text for _, text in keyed]
        t.note_columns = {text: keys for keys, text in keyed}
        t.differences = _differences(g, cols, headline)
        t.families = g.groupby("_label")["family"].first().dropna().to_dict()
        t.n_tokens = int(g["n_tokens"].max())
        gfid_header = next((f"{c.header} ({c.better} is better)" for c in cols if c.key == "gfid"), None)
        t.verdict = judge(rows, g, t.differences.get(gfid_header), t.n_tokens)
        if not t.verdict.ok:  # nothing to rank: no best, no front, no AUC order
            t.best, t.pareto, t.auc, t.auc_range = {}, [], {}, None
            rows["pareto"] = False
        tables.append(t)
    return tables


DIFFERENCE_KEYS = ("gfid", "class_acc")  # the columns whose method-vs-method differences are tabled


def _differences(g: pd.DataFrame, cols: list[Column], headline: str = "gfid") -> dict[str, pd.DataFrame]:
    from .paired import paired_differences

    if g["_label"].nunique() < 2:
        return {}
    g = g.assign(train_seed=g["train_seed"] if "train_seed" in g else 0)
    out = {}
    keys = dict.fromkeys((headline, *DIFFERENCE_KEYS))  # the headline's differences first
    for c in sorted((c for c in cols if c.key in keys), key=lambda c: list(keys).index(c.key)):
        d = paired_differences(g, c.key, c.better)
        if len(d):
            out[f"{c.header} ({c.better} is better)"] = d
    return out


DIFFERENCE_HEADERS = ("K", "a", "b", "seeds", "pairs", "a − b", "95% interval", "verdict")
CLAIM = "global merge", "truncation"  # the LGM paper's claim: merging beats truncation at small K


def claim(t: Table) -> dict[str, pd.DataFrame]:
    """The paper's claim as the table's data decide it: every global-merge vs truncation pair at
    K = N/8 and N/4, per differenced metric (rows of t.differences, with the same intervals)."""
    ks = {t.n_tokens // 8, t.n_tokens // 4}
    out = {}
    for name, d in t.differences.items():
        fam_a, fam_b = d["a"].map(t.families), d["b"].map(t.families)
        pair = ((fam_a == CLAIM[0]) & (fam_b == CLAIM[1])) | ((fam_a == CLAIM[1]) & (fam_b == CLAIM[0]))
        sel = d[pair & d["K"].isin(ks)]
        if len(sel):
            out[name] = sel
    return out


def difference_caption(name: str) -> str:
    """What a paired-differences table shows and how its interval is formed (vltbench.reporting.paired)."""
    from .paired import MODEL_NOTE

    return (f"Paired differences a − b of {name}, per K: pairs share (training seed, sampling seed); "
            f"{MODEL_NOTE} (vltbench/reporting/paired.py)")


def difference_cells(r) -> list[str]:
    """One paired-differences row as display text (no interval with one training seed)."""
    ci = f"[{_fmt(r.lo)}, {_fmt(r.hi)}]" if np.isfinite(r.lo) else "—"
    return [str(r.K), r.a, r.b, str(r.seeds), str(r.pairs), _fmt(r.diff), ci, r.verdict]


def _difference_lines(t: Table) -> list[str]:
    """Markdown tables of the paired differences."""
    out = []
    for name, d in t.differences.items():
        out += ["", difference_caption(name), "", "| " + " | ".join(DIFFERENCE_HEADERS) + " |",
                "|---:|---|---|---:|---:|---:|---|---|"]
        out += ["| " + " | ".join(difference_cells(r)) + " |" for r in d.itertuples(index=False)]
    return out


# -- rendering -------------------------------------------------------------------
def cell_texts(t: Table) -> list[list[tuple[str, bool]]]:
    """(text, is_best) per displayed cell."""
    out = []
    for i, r in enumerate(t.rows.itertuples(index=False)):
        d = r._asdict()
        row = [(str(d["method"]), False)] + [("—" if pd.isna(d[k]) else str(d[k]), False) for k in ("K", "seeds")]
        for c in t.columns:
            txt = _fmt(d[c.key])
            std = d.get(f"{c.key}_std")
            # cost and size are exact: no ±; a zero spread is not worth printing either
            if txt != "—" and not c.values and not c.exact and std and not np.isnan(std):
                txt += f" ± {_fmt(std)}"
            row.append((txt, i in t.best.get(c.key, ())))
        row.append(("✓" if d["pareto"] else "", False))
        out.append(row)
    return out


def headers(t: Table) -> list[str]:
    return ["method", "K", "seeds"] + [c.header for c in t.columns] + ["Pareto"]


def summary_lines(t: Table) -> list[str]:
    lines = [t.verdict.line] if t.verdict.line else []
    g = _headline_header(t)
    if t.pareto:
        lines.append(f"Pareto frontier ({g} vs sampling GFLOPs): " + ", ".join(f"{m} K={k}" for m, k in t.pareto))
    if t.auc:
        lo, hi = t.auc_range
        lines.append(f"AUC of {g} over log10(GFLOPs/img) in [{_fmt(lo)}, {_fmt(hi)}] GFLOPs (lower is better): "
                     + ", ".join(f"{m} {v:.3g}" for m, v in sorted(t.auc.items(), key=lambda kv: kv[1])))
    return lines + t.notes


def markdown(t: Table) -> str:
    out = [f"### {t.title}", ""]
    out += [f"- {k}: {v}" for k, v in t.group.items() if k != "comparable_key"]
    heads = headers(t)
    out += ["", "| " + " | ".join(heads) + " |", "|" + "|".join(["---"] + ["---:"] * (len(heads) - 1)) + "|"]
    for row in cell_texts(t):
        out.append("| " + " | ".join(f"**{s}**" if b else s for s, b in row) + " |")
    out += ["", "Best per column in bold." if t.verdict.ok else "No best marked (see the first note)."]
    out += [f"- {s}" for s in summary_lines(t)] + _difference_lines(t)
    return "\n".join(out) + "\n"


def tidy_frame(tables: list[Table]) -> pd.DataFrame:
    """Tidy numbers (mean and std columns), one line per method x K (row=method) plus the floor and
    ceiling reference rows (row=floor|ceiling), group fields repeated: what --format csv writes."""
    frames = []
    for t in tables:
        f = t.rows.copy()
        f["best"] = [";".join(k for k, idx in t.best.items() if i in idx) for i in range(len(f))]
        for k, v in reversed(list(t.group.items())):
            f.insert(0, k, v)
        frames.append(f)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def csv_text(tables: list[Table]) -> str:
    buf = io.StringIO()
    if tables:
        tidy_frame(tables).to_csv(buf, index=False)
    return buf.getvalue()
