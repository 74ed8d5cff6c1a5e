"""The tiny preset's acceptance gates (issue 20; issue 13's health checks kept), measured from a results folder; writes a markdown report.

    python scripts/tiny_gates.py --results results/reference --out results/GATES.md \
        [--check-degraded results/check/degraded.json --check-rerun results/check/rerun.json]

Every number comes from the records (and `vltbench check` JSON reports for gate 6); the noise of a
difference is vltbench.reporting.paired's: the training seed is the unit (pairs averaged over sampling seeds per
training seed), se = sd over training seeds / sqrt(seeds), 95% intervals with t(seeds - 1), and no
judgement below vltbench.reporting.paired.MIN_SEEDS_FOR_VERDICT training seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from vltbench.evaluation.extractors import get_extractor
from vltbench.evaluation.store import load_frame
from vltbench.reporting.paired import MIN_SEEDS_FOR_VERDICT, MODEL_NOTE, paired_mean_se
from vltbench.reporting.tables import claim, leaderboard


def fmt(v, n=2):
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{n}f}"


def _guidance(paths) -> list[dict]:
    """Per record: the scales actually scored by its guidance search and the one chosen."""
    out = []
    for path in paths:
        g = json.loads(Path(path).read_text()).get("guidance") or {}
        scored = sorted(float(w) for w in (g.get("scores") or {}))
        out.append({"scale": g.get("scale"), "scored": scored, "searched": g.get("protocol") == "search"})
    return out


def at_edge(scale: float, scored: list[float]) -> bool:
    """The chosen scale is the largest scored, or the smallest when that is above 1.0 (w = 1 is unguided:
    below it guidance turns against the class, so a best w = 1 is bracketed by definition)."""
    return len(scored) > 1 and (scale == scored[-1] or (scale == scored[0] and scored[0] > 1.0))


def coverage(n_train: int, n_exp: int = 2000, seed: int = 0) -> float:
    """Coverage of a known difference by vltbench.reporting.paired's interval on simulated experiments: d[t] =
    delta + u_t (training seed, sd 2) + e_t (sampling noise with a per-seed sd in [0.2, 3]), through
    paired_differences itself (the test suite runs more configurations)."""
    from vltbench.reporting.paired import paired_differences
    rng, delta, rows = np.random.default_rng(seed), 1.5, []
    for k in range(n_exp):
        d = delta + rng.normal(0, 2.0, n_train) + rng.uniform(0.2, 3.0, n_train) * rng.normal(0, 1, n_train)
        base = rng.normal(20, 5, n_train)
        rows += [{"_label": lab, "length": k, "train_seed": t, "seed": t, "m": v}
                 for t in range(n_train) for lab, v in (("a", base[t] + d[t]), ("b", base[t]))]
    out = paired_differences(pd.DataFrame(rows), "m", "lower")
    return float(((out["lo"] <= delta) & (delta <= out["hi"])).mean())


def gates(df: pd.DataFrame, checks: dict[str, Path], folder_log: Path | None = None) -> list[str]:
    n_full = int(df["n_tokens"].max())
    k_small, k_quarter = n_full // 8, n_full // 4
    label = df["metric_label"].iloc[0]
    seeds = sorted(int(s) for s in df["train_seed"].dropna().unique())
    out = ["# Tiny-preset gates (issue 20)", "",
           f"From {len(df)} records: methods {', '.join(sorted(df['method'].unique()))}; training seeds "
           f"{seeds}; N = {n_full}, N/8 = {k_small}, N/4 = {k_quarter}; metric "
           f"{label} ({df['extractor_id'].iloc[0]}), n = {df['n_samples'].iloc[0]} samples vs "
           f"n_ref = {df['n_ref'].iloc[0]}. Means over training seeds unless a column says otherwise.", ""]
    # 1. tokenizers use their length
    out += ["## 1. The tokenizers use their length", "",
            "Gate: PSNR(K = N) − PSNR(K = N/8) >= 2 dB for every method; merge's mean cosine of the latent tokens "
            "merged into one K = N/8 cluster <= 0.9 (the paper: 0.67; before the warm start: 0.97).", "",
            f"| method | PSNR K={k_small} | PSNR K={k_quarter} | PSNR K={n_full} | gap (>= 2 dB) | gap per seed | "
            f"in-cluster cos K={k_small} (<= 0.9) | all-pair cos |", "|---|---:|---:|---:|---:|---|---:|---:|"]
    for m, sub in df.groupby("method"):
        p = sub.groupby("length")["psnr"].mean()
        per = sub.pivot_table(index="train_seed", columns="length", values="psnr")
        gaps = (per[n_full] - per[k_small]) if {n_full, k_small} <= set(per.columns) else pd.Series(dtype=float)
        gap = p.get(n_full, np.nan) - p.get(k_small, np.nan)
        cos = sub[sub["length"] == k_small]["align_merged_pair_cos"].mean()
        mark = (" ✓" if cos <= 0.9 else " ✗") if m == "merge" else ""  # the gate is merge's; tome's is shown
        cos_txt = "— (nothing merges)" if np.isnan(cos) else f"{fmt(cos, 3)}{mark}"
        out.append(f"| {m} | {fmt(p.get(k_small))} | {fmt(p.get(k_quarter))} | {fmt(p.get(n_full))} | "
                   f"{fmt(gap)} {'✓' if gap >= 2 else '✗'} | {' / '.join(fmt(v) for v in gaps)} | {cos_txt} | "
                   f"{fmt(sub['align_all_pair_cos'].mean(), 3)} |")
    # 2. intervals
    t = leaderboard(df)[0]
    verdict_seeds = sorted({int(n) for d in t.differences.values() for n in d["seeds"]})
    out += ["", "## 2. Intervals that cover the truth", "",
            "Gate: the 95% intervals cover a known difference 92-98% of the time on simulated experiments; every "
            "verdict in the committed tables rests on >= 5 training seeds.", "",
            f"- coverage through `paired_differences` (2,000 simulated experiments each, training-seed sd 2, sampling "
            f"sd 0.2-3x): 3 seeds {coverage(3):.3f}, 5 seeds {coverage(5):.3f} "
            f"(`tests/test_paired.py` checks 8 configurations at 4,000 each)",
            f"- training seeds behind the committed paired differences: {verdict_seeds} "
            f"{'✓' if verdict_seeds and min(verdict_seeds) >= 5 else '✗'}", "- " + MODEL_NOTE + ".", ""]
    # 3. guidance brackets
    g = _guidance(df["path"])
    searched = [x for x in g if x["searched"]]
    edge = [(r.method, int(r.length), int(r.train_seed), x) for r, x in zip(df.itertuples(), g)
            if x["searched"] and at_edge(x["scale"], x["scored"])]
    grids = sorted({tuple(x["scored"]) for x in searched}, key=len)
    chosen = df.sort_values("train_seed").groupby(["method", "length"])["cfg_scale"].agg(
        lambda v: " / ".join(f"{w:g}" for w in v))
    out += ["## 3. The guidance search brackets its optimum", "",
            "Gate: no cell's chosen scale sits at the edge of the grid it scored.", "",
            f"- cells searched: {len(searched)}; chosen at an edge: {len(edge)} {'✓' if not edge else '✗'}"
            + "".join(f"; {m} K={k} seed {s} at {x['scale']:g} of {x['scored']}" for m, k, s, x in edge),
            "- grids scored (after automatic extension): " + "; ".join(str(list(gr)) for gr in grids), "",
            f"| method | K | chosen scale per training seed ({', '.join(map(str, seeds))}) |", "|---|---:|---|"]
    out += [f"| {m} | {k} | {v} |" for (m, k), v in chosen.items()]
    # 4. the extractor follows the dataset
    out += ["", "## 4. The extractor follows the dataset", "",
            "Gate: `vltbench run --method merge --lengths 4,8,32 --set data.name=folder --data-root DIR` on RGB "
            "images prints no mnist-cnn number.", ""]
    if folder_log is not None and Path(folder_log).is_file():
        text = Path(folder_log).read_text()
        hits = [line for line in text.splitlines() if "mnist-cnn" in line]
        out += [f"- `{folder_log}`: {len(text.splitlines())} lines, lines naming mnist-cnn: {len(hits)} "
                f"{'✓' if not hits else '✗'}", ""]
    else:
        out += ["- not measured here (pass --folder-log)", ""]
    # 5. the paper's claim
    out += [f"## 5. The paper's claim: merge vs each truncation baseline at K = N/8 = {k_small} and N/4 = {k_quarter}", "",
            "Paired differences a − b (negative gFD = a better; positive class acc. = a better); the same rows as "
            "the report page's claim list (vltbench.reporting.tables.claim). " + MODEL_NOTE + ".", ""]
    for name, d in claim(t).items():
        out += [f"{name}:", "", "| K | a | b | seeds | a − b | 95% interval | verdict |", "|---:|---|---|---:|---:|---|---|"]
        out += [f"| {r.K} | {r.a} | {r.b} | {r.seeds} | {fmt(r.diff, 3)} | [{fmt(r.lo, 3)}, {fmt(r.hi, 3)}] | {r.verdict} |"
                for r in d.itertuples(index=False)]
        out.append("")
    # 6. metric health
    dim = get_extractor(df["extractor_id"].iloc[0].split(":")[0]).dim
    real = df["real_fid"].mean()
    best = df.groupby(["method", "length"])["gfid"].mean().min()
    ceil = df.groupby("method")["rfid_full"].mean()
    counts = {"n_samples": int(df["n_samples"].iloc[0]), "n_ref": int(df["n_ref"].iloc[0])}
    out += ["## 6. Metric health", "",
            f"- floor (held-out real vs reference, same n): g{label} {fmt(real)} ± {fmt(df['real_fid_bootstrap_std'].mean())}",
            f"- lowest model score (any method, any K, mean over seeds): {fmt(best)} = {fmt(best / real, 1)}x the floor; "
            f"tokenizer ceilings (recon at K = N): " + ", ".join(f"{m} {fmt(v)}" for m, v in ceil.items()),
            f"- sample counts {counts} vs feature dimension {dim}: "
            + ("every count >= 2x the dimension" if min(counts.values()) >= 2 * dim else "TOO FEW"), ""]
    # 7. recognisable samples
    out += ["## 7. Samples are recognisable (class_acc at K = N, >= 0.80)", "",
            "| method | class_acc (mean over seeds) | per seed | classifier on real held-out digits |", "|---|---:|---|---:|"]
    for m, sub in df[df["length"] == n_full].groupby("method"):
        per = sub.sort_values("train_seed")["class_acc"]
        out.append(f"| {m} | {fmt(per.mean(), 3)} {'✓' if per.mean() >= 0.8 else '✗'} | "
                   f"{' / '.join(fmt(v, 3) for v in per)} | {fmt(sub['real_class_acc'].mean(), 3)} |")
    # 8. discrimination: K = N/8 vs K = N per method, with the training seed as the unit
    out += ["", f"## 8. The benchmark discriminates: g{label} at K = N/8 minus K = N, per method", "",
            f"Noise = se over training seeds of the per-seed differences; judged only with >= "
            f"{MIN_SEEDS_FOR_VERDICT} training seeds.", "",
            "| method | seeds | pairs | diff | noise (se) | diff / noise | > 3x noise |", "|---|---:|---:|---:|---:|---:|---|"]
    for m, sub in df.groupby("method"):
        a = sub[sub["length"] == k_small].set_index(["train_seed", "seed"])
        b = sub[sub["length"] == n_full].set_index(["train_seed", "seed"])
        common = a.index.intersection(b.index)
        if not len(common):
            continue
        d = (a.loc[common, "gfid"] - b.loc[common, "gfid"]).to_numpy(float)
        mean, se, n = paired_mean_se(d, common.get_level_values("train_seed").to_numpy())
        judged = ("✓" if abs(mean) > 3 * se else "✗") if n >= MIN_SEEDS_FOR_VERDICT else f"undecided: {n} seeds"
        out.append(f"| {m} | {n} | {len(d)} | {fmt(mean)} | {fmt(se)} | {fmt(abs(mean) / se, 1)} | {judged} |")
    out.append("")
    # 9. check
    if checks:
        out += ["## 9. `vltbench check` against this baseline", ""]
        for what, path in checks.items():
            rep = json.loads(Path(path).read_text())
            out += [f"{what} (`{path}`): **{'FAILED (regression flagged)' if rep['failed'] else 'passed'}**", "",
                    "| method | K | metric | baseline | candidate | delta | threshold | verdict |",
                    "|---|---:|---|---:|---:|---:|---:|---|"]
            out += [f"| {r['method']} | {r['length']} | {r['metric']} | {fmt(r['baseline'])} | {fmt(r['candidate'])} | "
                    f"{fmt(r['delta'])} | {fmt(r['threshold'])} | {r['verdict']} |" for r in rep["rows"]]
            out.append("")
    return out


def sizing(paths: list[Path], ref: pd.DataFrame | None = None) -> list[str]:
    """The warm-start sizing table (scripts/size_warm_start.py rows; warm 0 from the earlier reference);
    the DiT stage's gFD of the warm start the reference `ref` was trained with comes from its records."""
    rows = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]
    if not rows:
        return []
    df = pd.DataFrame(rows)
    if ref is not None and len(ref):
        warm = json.loads(Path(ref["path"].iloc[0]).read_text())["config"]["tokenizer"].get("warm_start", 0)
        for m, sub in ref.groupby("method"):
            gfd = sub.groupby("length")["gfid"].mean()
            at = (df["warm_start"] == warm) & (df["method"] == m)
            for k in (4, 8, 32):
                df.loc[at, f"gfd_{k}"] = gfd.get(k, np.nan)
        df.loc[df["warm_start"] == warm, "gfd_seeds"] = ref["train_seed"].nunique()
    df["gap"] = df["psnr_32"] - df["psnr_4"]
    out = ["## 10. Sizing the shared warm start (tokenizer stage; PSNR of the 500 held-out digits)", "",
           "Rows: `scripts/size_warm_start.py` (warm 0: the records of the reference before the warm start). "
           "Mean over training seeds (n in the last column); gFD (the DiT stage) where measured: warm 0 from the "
           "earlier reference (2 seeds), the chosen warm start from this reference (all its seeds).", "",
           "| warm start | method | PSNR K=4 | K=8 | K=32 | gap K=32 − K=4 | merge in-cluster cos K=4 | gFD K=4 / 8 / 32 | seeds |",
           "|---:|---|---:|---:|---:|---:|---:|---|---:|"]
    for (w, m), sub in df.groupby(["warm_start", "method"]):
        mean = sub.mean(numeric_only=True)
        gfd = " / ".join(fmt(mean.get(f"gfd_{k}")) for k in (4, 8, 32)) if "gfd_4" in sub and sub["gfd_4"].notna().any() else "—"
        cos = fmt(mean.get("cos_in_cluster"), 3) if m == "merge" else "—"
        out.append(f"| {w} | {m} | {fmt(mean['psnr_4'])} | {fmt(mean['psnr_8'])} | {fmt(mean['psnr_32'])} | "
                   f"{fmt(mean['gap'])} | {cos} | {gfd} | {len(sub)} |")
    worst = df.groupby(["warm_start", "method"])["gap"].mean().groupby("warm_start").min()
    out += ["", "Smallest gap over the four methods per warm start: "
            + ", ".join(f"{w}: {fmt(v)} dB" for w, v in worst.items()), ""]
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results/reference")
    p.add_argument("--out", default=None)
    p.add_argument("--check-degraded", default=None)
    p.add_argument("--check-rerun", default=None)
    p.add_argument("--folder-log", default=None, help="output of the folder-dataset run (gate 4)")
    p.add_argument("--sizing", nargs="*", default=[], help="warm-start sizing rows (JSON lines)")
    a = p.parse_args()
    checks = {k: v for k, v in (("degraded merge (random table)", a.check_degraded),
                                ("unchanged merge, rerun", a.check_rerun)) if v}
    frame = load_frame(a.results)
    text = "\n".join(gates(frame, checks, a.folder_log) + sizing(a.sizing, frame)) + "\n"
    if a.out:
        Path(a.out).write_text(text)
    print(text)
