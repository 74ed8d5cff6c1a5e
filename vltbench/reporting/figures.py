"""Trade-off figures (PNG + SVG) for a results frame from `store.load_frame`.

Figures are built with matplotlib's object API (no pyplot), so no global backend is switched and
nothing needs a display; seaborn styles are applied through context managers only.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from vltbench.evaluation.metrics.specs import metric_spec

from .tables import comparable_groups, fd_name, guidance_text, pareto_mask, row_labels

N_SAMPLES_SHOWN = 4  # samples per grid cell, cropped from each record's strip
MARKERS = "osD^vP*X"


def extractor_name(extractor_id: str | None) -> str:
    base = str(extractor_id or "?").split(":")[0]
    return "Inception-v3" if base.startswith("inception-v3") else base


def metric_axis_label(row: pd.Series, prefix: str) -> str:
    """e.g. "gFID (Inception-v3, n=1000 vs val)" from the record's metric spec."""
    return (f"{fd_name(row['metric_label'], prefix)} ({extractor_name(row['extractor_id'])}, "
            f"n={row['n_samples']} vs {row['ref_split']})")


def _title(row: pd.Series) -> str:
    s = json.loads(row["spec_sampler"])
    parts = [f"{k}={s[k]}" for k in ("steps", "shift") if k in s]
    # the protocol, not one scale: under search every (method, K) has its own
    return f"{row['dataset']} ({row['image_size']} px) · sampler {', '.join(parts)} · {guidance_text(s, short=True)}"


def _agg(g: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Mean, std and count over seeds per (method label, K)."""
    cols = [c for c in cols if c in g]
    a = g.groupby(["_label", "length"])[cols].agg(["mean", "std", "count"])
    a.columns = [f"{c}_{s}" for c, s in a.columns]
    return a.reset_index()


@contextmanager
def styled():
    """The figures' seaborn style, for building and saving them (context managers only: no global state)."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        yield


def _save(fig: Figure, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def labelled(g: pd.DataFrame) -> pd.DataFrame:
    """A comparable group with its row labels (`_label`), which every figure groups by."""
    return g.assign(_label=row_labels(g))


def _palette(labels) -> dict:
    labels = sorted(labels)
    return dict(zip(labels, sns.color_palette("colorblind", len(labels))))


def fig_tradeoff(g: pd.DataFrame) -> Figure | None:
    """The table's headline (gFID, or KID at n <= feature dim) vs sampling GFLOPs (log x), ± seed std (one
    seed: the bootstrap / subset std), floor / ceiling lines, Pareto frontier; None without data."""
    from .tables import headline_key

    metric = headline_key(g) if {"extractor_id", "n_samples", "n_ref"} <= set(g) else "gfid"
    noise = {"gfid": "gfid_bootstrap_std", "kid": "kid_std"}[metric]
    if not {metric, "sampling_gflops"} <= set(g):
        return None
    a = _agg(g, [metric, noise, "sampling_gflops"]).dropna(subset=[f"{metric}_mean", "sampling_gflops_mean"])
    # the columns under the names the drawing below reads (gfid_*), whichever metric leads
    a = a.rename(columns=lambda c: c.replace(f"{noise}_", "gfid_bootstrap_std_", 1) if c.startswith(f"{noise}_")
                 else c.replace(f"{metric}_", "gfid_", 1) if c.startswith(f"{metric}_") else c)
    if a.empty:
        return None
    colors = _palette(a["_label"].unique())
    fig = Figure(figsize=(6.6, 4.6))
    ax = fig.add_subplot()
    seeds = a["gfid_count"].max()
    tops: dict[tuple, tuple[float, float]] = {}  # (K, cost bin) -> (x, highest y incl. error bar)
    for i, (label, s) in enumerate(sorted(a.groupby("_label"), key=lambda kv: kv[0])):
        s = s.sort_values("sampling_gflops_mean")
        # ± seed std with several seeds, else the bootstrap std: the noise a difference must beat
        err = s["gfid_std"].where(s["gfid_count"] > 1, s.get("gfid_bootstrap_std_mean")).fillna(0)
        ax.errorbar(s["sampling_gflops_mean"], s["gfid_mean"], yerr=err,
                    color=colors[label], label=label, marker=MARKERS[i % len(MARKERS)], ms=6, lw=1.6, capsize=3)
        for x, y, e, k in zip(s["sampling_gflops_mean"], s["gfid_mean"], err, s["length"]):
            key = (int(k), round(float(np.log10(x)) * 20))  # methods at the same K and cost share a label
            tops[key] = max(tops.get(key, (x, -np.inf)), (x, y + e), key=lambda t: t[1])
    for (k, _), (x, y) in tops.items():
        ax.annotate(f"K={k}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8.5,
                    color="0.2")
    front = a[pareto_mask(a["sampling_gflops_mean"], a["gfid_mean"])].sort_values("sampling_gflops_mean")
    verdict = _verdict(g)
    if verdict.ok and len(front) > 1:
        ax.plot(front["sampling_gflops_mean"], front["gfid_mean"], ls="--", color="0.55", lw=1, zorder=0,
                label="Pareto frontier", drawstyle="steps-post")
    refs = _references(ax, g, colors, *(("real_kid", "rkid_full") if metric == "kid" else ("real_fid", "rfid_full")))
    ax.set_xscale("log")
    # plain numbers (2, 5, 10, 20) instead of 2x10^0: readable on a narrow decade range
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("sampling cost [GFLOPs / image]")
    ax.set_ylabel(metric_axis_label(g.iloc[0], "g") if metric == "gfid" else
                  metric_axis_label(g.iloc[0], "g").replace(fd_name(g.iloc[0]["metric_label"], "g"), "KID", 1))
    ax.set_title(_title(g.iloc[0]) + ("" if verdict.ok else "\ncannot tell methods apart: no Pareto front "
                                      "(see the table's note)"), fontsize=10)
    ax.margins(x=0.12, y=0.14)
    title = f"method (mean ± std, {seeds} seeds)" if seeds > 1 else f"method (± {'bootstrap' if metric == 'gfid' else 'subset'} std)"
    # reference lines span the whole width: a legend inside would hide them
    where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if refs else {}
    ax.legend(title=title, fontsize=8, title_fontsize=9, frameon=True, **where)
    return fig


def _verdict(g: pd.DataFrame):
    """The group's discriminability verdict, as its leaderboard table states it."""
    from .tables import leaderboard

    return leaderboard(g.drop(columns="_label", errors="ignore"))[0].verdict


def _references(ax, g: pd.DataFrame, colors: dict, floor_key: str = "real_fid", ceiling_key: str = "rfid_full") -> bool:
    """The metric's floor at this n (real held-out images) and each tokenizer's ceiling (recon at K = N);
    True when any was drawn."""
    floor = floor_key in g and g[floor_key].notna().any()
    if floor:
        ax.axhline(g[floor_key].mean(), ls=":", color="0.25", lw=1.3, zorder=1.5, label="real (floor)")
    ceil = g.groupby("_label")[ceiling_key].mean().dropna() if ceiling_key in g else pd.Series(dtype=float)
    ceil = ceil[ceil.index.isin(list(colors))]
    for label, y in ceil.items():
        ax.axhline(y, ls="--", lw=0.8, color=colors[label], alpha=0.8, zorder=1.5)  # above the grid
    if len(ceil):
        ax.plot([], [], ls="--", lw=0.8, color="0.45", label="tokenizer @K=N recon (ceiling)")  # one legend entry
    return floor or bool(len(ceil))


def _log2_lengths(ax, lengths) -> None:
    ax.set_xscale("log", base=2)
    ks = sorted({int(k) for k in lengths})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("token length K")


def fig_rfid(g: pd.DataFrame) -> Figure | None:
    """rFID vs K (± noise) with the floor and ceiling lines; None without rFID."""
    if "rfid" not in g:
        return None
    a = _agg(g, ["rfid", "rfid_bootstrap_std"]).dropna(subset=["rfid_mean"])
    if a.empty:
        return None
    colors = _palette(a["_label"].unique())
    fig = Figure(figsize=(6.6, 4.2))
    ax = fig.add_subplot()
    for i, (label, s) in enumerate(sorted(a.groupby("_label"), key=lambda kv: kv[0])):
        s = s.sort_values("length")
        # ± seed std with several seeds, else the bootstrap std: the noise a difference must beat
        err = s["rfid_std"].where(s["rfid_count"] > 1, s.get("rfid_bootstrap_std_mean")).fillna(0)
        ax.errorbar(s["length"], s["rfid_mean"], yerr=err, marker=MARKERS[i % len(MARKERS)], color=colors[label],
                    label=label, capsize=3)
    refs = _references(ax, g, colors)
    _log2_lengths(ax, a["length"])
    ax.set_ylabel(metric_axis_label(g.iloc[0], "r"))
    ax.set_title(f"reconstruction · {_title(g.iloc[0]).split(' · ')[0]}", fontsize=10)
    where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if refs else {}
    ax.legend(title="method (± noise)", fontsize=8, title_fontsize=9, **where)
    return fig


RECON_KEYS = ("psnr", "ssim", "lpips")  # per-image reconstruction metrics drawn vs K beside rFID


PANELS_PER_ROW = 3  # panels side by side in one figure (alignment diagnostics wrap onto rows)


def _panels(g: pd.DataFrame, cols: list[str], suptitle: str, err: bool = False) -> Figure:
    """One panel per column vs K (log2 x), one line per method (± seed std when err and seeds > 1)."""
    a = _agg(g, cols)
    colors = _palette(a["_label"].unique())
    ncols = min(len(cols), PANELS_PER_ROW)
    nrows = -(-len(cols) // ncols)
    fig = Figure(figsize=(3.6 * ncols + 1.6, 3.3 * nrows + 0.3))
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for ax in grid.flat[len(cols):]:  # an incomplete last row
        ax.set_visible(False)
    axes = grid.flat[:len(cols)]
    for ax, c in zip(axes, cols):
        spec = metric_spec(c)
        for i, (label, s) in enumerate(sorted(a.groupby("_label"), key=lambda kv: kv[0])):
            s = s.dropna(subset=[f"{c}_mean"]).sort_values("length")
            if len(s):
                yerr = s[f"{c}_std"].where(s[f"{c}_count"] > 1).fillna(0) if err else None
                ax.errorbar(s["length"], s[f"{c}_mean"], yerr=yerr, marker=MARKERS[i % len(MARKERS)],
                            color=colors[label], label=label, capsize=3 if err else 0)
        _log2_lengths(ax, a["length"])
        header = spec.header_for(g["metric_label"].iloc[0]) if spec else c
        ax.set_title(header + (f" ({spec.better} is better)" if spec and spec.better else ""), fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="method", loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


def fig_recon(g: pd.DataFrame) -> Figure | None:
    """PSNR / SSIM / LPIPS (those measured) vs K: what reconstruction at K keeps per image; None without any."""
    cols = [c for c in RECON_KEYS if c in g and g[c].notna().any()]
    if not cols:
        return None
    return _panels(g, cols, "reconstruction at K (same held-out images as rFID; ± seed std)", err=True)


def fig_alignment(g: pd.DataFrame) -> Figure | None:
    """The align_* diagnostics vs K, one panel each; None without any."""
    cols = [c for c in sorted(g.columns) if c.startswith("align_") and g[c].notna().any()]
    if not cols:
        return None
    return _panels(g, cols, "alignment of K-token latents with the full-length latents")


def _strip(path: Path, n: int) -> np.ndarray | None:
    from PIL import Image

    try:
        img = Image.open(path).convert("RGB")
    except OSError:
        return None
    w, h = img.size
    return np.asarray(img.crop((0, 0, min(w, n * h), h)))  # samples are square tiles of height h


def sample_strips(g: pd.DataFrame, results_root: Path | None = None,
                  n: int = N_SAMPLES_SHOWN) -> dict[tuple[str, int], tuple[np.ndarray | None, int | None]]:
    """(method label, K) -> (the first n samples of its lowest-seed record that has a readable strip, that
    seed), or (None, None); {} when no record has samples. Every cell of one seed shares seeds and classes."""
    if "samples_path" not in g or g["samples_path"].isna().all():
        return {}
    g = g.sort_values("seed")
    out = {}
    for label in sorted(g["_label"].unique()):
        for k in sorted(g["length"].unique()):
            sub = g[(g["_label"] == label) & (g["length"] == k)].dropna(subset=["samples_path"])
            out[(label, int(k))] = (None, None)
            for p, seed in zip(sub["samples_path"], sub["seed"]):  # lowest seed first
                p = Path(p)
                if not p.exists() and results_root is not None:
                    p = Path(results_root) / p
                if (img := _strip(p, n)) is not None:
                    out[(label, int(k))] = (img, int(seed))
                    break
    return out


def fig_samples(g: pd.DataFrame, results_root: Path | None) -> Figure | None:
    """A grid of sample strips, method x K; None when no record has samples."""
    strips = sample_strips(g, results_root)
    if not strips:
        return None
    labels, lengths = sorted({m for m, _ in strips}), sorted({k for _, k in strips})
    fig = Figure(figsize=(1.3 + 2.1 * len(lengths), 0.5 + 0.62 * len(labels)))
    axes = fig.subplots(len(labels), len(lengths), squeeze=False)
    for r, label in enumerate(labels):
        for c, k in enumerate(lengths):
            ax = axes[r, c]
            img = strips[(label, k)][0]
            if img is not None:
                ax.imshow(img, interpolation="nearest")
                h = img.shape[0]
                for j in range(1, img.shape[1] // h):  # white gaps between the samples
                    ax.axvline(j * h - 0.5, color="white", lw=2)
            else:
                ax.text(0.5, 0.5, "no samples", ha="center", va="center", fontsize=8, color="0.5",
                        transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            if r == 0:
                ax.set_title(f"K={k}", fontsize=10)
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
    fig.suptitle(f"first {N_SAMPLES_SHOWN} samples (same seeds/classes in every cell)", fontsize=10)
    fig.tight_layout()
    return fig


# the committed reference figures of this repository: rewritten only when --out names them
COMMITTED_PLOTS = Path(__file__).resolve().parents[2] / "results" / "plots"


def default_out(results: str | Path) -> Path:
    """`vltbench plot`'s output without --out: `<results>/plots`, beside the records plotted (for one
    record file, beside its folder), so a user's run never rewrites the committed results/plots."""
    from vltbench.core.errors import UserError

    results = Path(results)
    out = (results.parent if results.is_file() else results) / "plots"
    if out.resolve() == COMMITTED_PLOTS:
        raise UserError(f"the default plot folder {out} holds the committed reference figures; "
                        "pass --out results/plots to rewrite them, or another --out folder")
    return out


LOSS_SUFFIX = ".losses.jsonl"


def loss_logs(df: pd.DataFrame) -> dict[tuple[str, str], list[Path]]:
    """(method, stage) -> the loss logs (train.loss_log_path) that exist beside the records' checkpoints."""
    found: dict[tuple[str, str], list[Path]] = {}
    if "checkpoint_path" not in df:
        return found
    pairs = df[["method", "checkpoint_path"]].dropna().drop_duplicates()
    for method, ckpt in sorted(pairs.itertuples(index=False, name=None)):
        ckpt = Path(ckpt)
        if not ckpt.parent.is_dir():
            continue
        for log in sorted(ckpt.parent.glob(f"{ckpt.name}.*{LOSS_SUFFIX}")):
            stage = log.name[len(ckpt.name) + 1:-len(LOSS_SUFFIX)]
            found.setdefault((method, stage), []).append(log)
    return found


def _smooth(y: np.ndarray) -> np.ndarray:
    w = max(1, len(y) // 50)
    return pd.Series(y).rolling(w, min_periods=1, center=True).mean().to_numpy()


def loss_figures(df: pd.DataFrame) -> list[tuple[str, Figure]]:
    """(name, figure) per (method, stage) with a loss log: training loss vs step (log y), one line per checkpoint."""
    from vltbench.training.loops import read_loss_log

    figs: list[tuple[str, Figure]] = []
    for (method, stage), logs in loss_logs(df).items():
        curves = [(log, rows) for log in logs if (rows := read_loss_log(log))]
        if not curves:
            continue
        colors = sns.color_palette("colorblind", len(curves))
        fig = Figure(figsize=(6.0, 3.8))
        ax = fig.add_subplot()
        for (log, rows), color in zip(curves, colors):
            step = np.array([r["step"] for r in rows])
            loss = np.array([r["loss"] for r in rows], dtype=float)
            label = log.name[:-len(LOSS_SUFFIX)].rsplit(".", 1)[0]  # the checkpoint's file name
            smooth = len(rows) >= 100
            ax.plot(step, loss, color=color, lw=0.8, alpha=0.35 if smooth else 1.0,
                    label=None if smooth else label)
            if smooth:
                ax.plot(step, _smooth(loss), color=color, lw=1.6, label=f"{label} (running mean)")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.2, not 2x10^-1
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training step")
        ax.set_ylabel("tokenizer reconstruction MSE" if stage == "tokenizer" else "flow-matching loss")
        ax.set_title(f"{method} · {stage} training loss", fontsize=10)
        ax.legend(fontsize=7, title="checkpoint", title_fontsize=8)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{method}_{stage}")
        figs.append((f"loss_{safe}", fig))
    return figs


def group_figures(g: pd.DataFrame, sfx: str = "", results_root: Path | None = None) -> list[tuple[str, Figure]]:
    """(file name, figure) of every figure one labelled comparable group has data for."""
    figs = [(f"gfid_vs_gflops{sfx}", fig_tradeoff(g)), (f"rfid_vs_length{sfx}", fig_rfid(g)),
            (f"recon_vs_length{sfx}", fig_recon(g)), (f"alignment_vs_length{sfx}", fig_alignment(g)),
            (f"samples{sfx}", fig_samples(g, results_root))]
    return [(name, fig) for name, fig in figs if fig is not None]


def make_plots(df: pd.DataFrame, out_dir: str | Path, results_root: str | Path | None = None) -> list[Path]:
    """All figures, per comparable group (suffix _g<i> when there are several), and the training
    loss curves of the records' checkpoints where their loss logs exist; returns the files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if df.empty:
        return []
    groups = comparable_groups(df)
    root = Path(results_root) if results_root else None
    paths: list[Path] = []
    with styled():
        for i, g in enumerate(groups, 1):
            sfx = f"_g{i}" if len(groups) > 1 else ""
            for name, fig in group_figures(labelled(g), sfx, root):
                paths += _save(fig, out, name)
        for name, fig in loss_figures(df):
            paths += _save(fig, out, name)
    return paths
