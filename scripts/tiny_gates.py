"""The tiny preset's acceptance gates (issue 13), measured from a results folder; writes a markdown report.

    python scripts/tiny_gates.py --results results/reference --out results/GATES.md \
        [--check-degraded results/check/degraded.json --check-rerun results/check/rerun.json]

Every number comes from the records (and `vltbench check` JSON reports for gate 6); the noise of a
difference is vltbench.paired's: the training seed is the unit (pairs averaged over sampling seeds per
training seed), se = sd over training seeds / sqrt(seeds), 95% intervals with t(seeds - 1), and no
judgement below vltbench.paired.MIN_SEEDS_FOR_VERDICT training seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from vltbench.metrics import get_extractor
from vltbench.paired import MIN_SEEDS_FOR_VERDICT, MODEL_NOTE, paired_mean_se
from vltbench.report import leaderboard
from vltbench.store import load_frame


def fmt(v, n=2):
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{n}f}"


def gates(df: pd.DataFrame, checks: dict[str, Path]) -> list[str]:
    n_full = int(df["n_tokens"].max())
    k_small = n_full // 8
    label = df["metric_label"].iloc[0]
    out = [f"# Tiny-preset gates (issue 13)", "",
           f"From {len(df)} records: methods {', '.join(sorted(df['method'].unique()))}; training seeds "
           f"{sorted(int(s) for s in df['train_seed'].dropna().unique())}; N = {n_full}, N/8 = {k_small}; metric "
           f"{label} ({df['extractor_id'].iloc[0]}), n = {df['n_samples'].iloc[0]} samples vs "
           f"n_ref = {df['n_ref'].iloc[0]}.", ""]
    # 1. metric health
    dim = get_extractor(df["extractor_id"].iloc[0].split(":")[0]).dim
    real = df["real_fid"].mean()
    best = df.groupby(["method", "length"])["gfid"].mean().min()
    ceil = df.groupby("method")["rfid_full"].mean()
    counts = {"n_samples": int(df["n_samples"].iloc[0]), "n_ref": int(df["n_ref"].iloc[0])}
    out += ["## 1. Metric health", "",
            f"- floor (held-out real vs reference, same n): g{label} {fmt(real)} ± {fmt(df['real_fid_bootstrap_std'].mean())}",
            f"- lowest model score (any method, any K, mean over seeds): {fmt(best)} = {fmt(best / real, 1)}x the floor; "
            f"tokenizer ceilings (recon at K = N): " + ", ".join(f"{m} {fmt(v)}" for m, v in ceil.items()),
            f"- sample counts {counts} vs feature dimension {dim}: "
            + ("every count >= 2x the dimension" if min(counts.values()) >= 2 * dim else "TOO FEW"), ""]
    # 2. tokenizers use their length
    out += ["## 2. The tokenizers use their length", "",
            f"| method | PSNR K=N/8={k_small} | PSNR K=N={n_full} | gap (gate >= 3 dB) | token-pair cos (gate <= 0.5) |",
            "|---|---:|---:|---:|---:|"]
    for m, sub in df.groupby("method"):
        p = sub.groupby("length")["psnr"].mean()
        cos = sub["align_all_pair_cos"].mean()
        gap = p.get(n_full, np.nan) - p.get(k_small, np.nan)
        out.append(f"| {m} | {fmt(p.get(k_small))} | {fmt(p.get(n_full))} | {fmt(gap)} {'✓' if gap >= 3 else '✗'} | "
                   f"{fmt(cos)} {'✓' if cos <= 0.5 else '✗'} |")
    # 3. recognisable samples
    out += ["", "## 3. Samples are recognisable (class_acc at K = N, gate >= 0.80)", "",
            "| method | class_acc (mean over seeds) | per seed | classifier on real held-out digits |", "|---|---:|---|---:|"]
    for m, sub in df[df["length"] == n_full].groupby("method"):
        per = sub.sort_values("train_seed")["class_acc"]
        out.append(f"| {m} | {fmt(per.mean(), 3)} {'✓' if per.mean() >= 0.8 else '✗'} | "
                   f"{' / '.join(fmt(v, 3) for v in per)} | {fmt(sub['real_class_acc'].mean(), 3)} |")
    # 4. discrimination: K = N/8 vs K = N per method, with the training seed as the unit
    out += ["", f"## 4. The benchmark discriminates: g{label} at K = N/8 minus K = N, per method", "",
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
    # 5. merge vs truncation at small K
    t = leaderboard(df)[0]
    out += ["", "## 5. Merge vs truncation (paired differences, 95% intervals; negative gFD = merge better)", "",
            MODEL_NOTE + ".", ""]
    for name, d in t.differences.items():
        sel = d[(d["a"] == "merge") | (d["b"] == "merge")]
        out += [f"{name}:", "", "| K | a | b | seeds | a − b | 95% interval | verdict |", "|---:|---|---|---:|---:|---|---|"]
        out += [f"| {r.K} | {r.a} | {r.b} | {r.seeds} | {fmt(r.diff, 3)} | [{fmt(r.lo, 3)}, {fmt(r.hi, 3)}] | {r.verdict} |"
                for r in sel.itertuples(index=False)]
        out.append("")
    # 6. check
    if checks:
        out += ["## 6. `vltbench check` against this baseline", ""]
        for what, path in checks.items():
            rep = json.loads(Path(path).read_text())
            out += [f"{what} (`{path}`): **{'FAILED (regression flagged)' if rep['failed'] else 'passed'}**", "",
                    "| method | K | metric | baseline | candidate | delta | threshold | verdict |",
                    "|---|---:|---|---:|---:|---:|---:|---|"]
            out += [f"| {r['method']} | {r['length']} | {r['metric']} | {fmt(r['baseline'])} | {fmt(r['candidate'])} | "
                    f"{fmt(r['delta'])} | {fmt(r['threshold'])} | {r['verdict']} |" for r in rep["rows"]]
            out.append("")
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results/reference")
    p.add_argument("--out", default=None)
    p.add_argument("--check-degraded", default=None)
    p.add_argument("--check-rerun", default=None)
    a = p.parse_args()
    checks = {k: v for k, v in (("degraded merge (random table)", a.check_degraded),
                                ("unchanged merge, rerun", a.check_rerun)) if v}
    text = "\n".join(gates(load_frame(a.results), checks)) + "\n"
    if a.out:
        Path(a.out).write_text(text)
    print(text)
