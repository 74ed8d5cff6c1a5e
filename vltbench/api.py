"""vltbench as a library: the functions behind every `vltbench` command.

    import vltbench
    df = vltbench.evaluate(["merge"], [4, 8])          # like `vltbench run --method merge --lengths 4,8`
    tables = vltbench.leaderboard(df)                   # or leaderboard("results/runs")
    report = vltbench.check("results/reference", "results/runs")
    costs = vltbench.flops("merge", [4, 8, 32])

The command line (vltbench.cli) only maps its options to these calls, so both validate the same way:
every user mistake is a `vltbench.core.errors.UserError` whose one-line message is exactly what the CLI
prints after `error: `. Messages name the CLI option (`--lengths`, `--seeds`, ...); the keyword
arguments here carry the same names (lengths, seeds, n_samples, ...), and `overrides` is `--set`.

The parsing and validation of the user's values (lengths, seeds, --set, method names, output paths)
lives in vltbench.inputs; its names are importable from here too, as before the split.

This module imports nothing heavy (torch, pandas) until a function runs, so `import vltbench` and the
CLI's start stay fast.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vltbench.core import defaults
from vltbench.core.errors import UserError
from vltbench.inputs import (
    check_positive,
    dataset_classes,
    load_config,
    load_records,
    method_names,
    parse_lengths,
    parse_method_map,
    parse_names,
    parse_overrides,
    parse_seeds,
    parse_sets,  # noqa: F401  (imported from vltbench.api before the split)
    set_quiet,
    strict_frame,
    train_args,
    writable_file,
    write_errors,
    write_failed,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from vltbench.reporting.check import CheckReport
    from vltbench.reporting.tables import Table

__all__ = ["evaluate", "train", "leaderboard", "check", "flops", "plot", "report", "import_lgm", "import_titok", "UserError"]


def evaluate(methods: str | Sequence[str], lengths: str | int | Sequence[int], *, preset: str = defaults.PRESET,
             config: str | Path | None = None, overrides: Mapping[str, Any] | Sequence[str] | None = None,
             seeds: str | int | Sequence[int] = defaults.SEEDS, results: str | Path = defaults.RESULTS,
             train: bool = True, executor: str = defaults.EXECUTOR, slurm_partition: str | None = None,
             overwrite: bool = False, checkpoint: str | Path | None = None, generator: str | None = None,
             n_samples: int | None = None,
             extractor: str | None = None, inception_weights: str | Path | None = None,
             data_root: str | Path | None = None, device: str | None = None,
             quiet: bool | None = None, save_samples: bool = False, dry_run: bool = False,
             throughput: float | None = None) -> pd.DataFrame:
    """Evaluate every (method, length, seed) cell and return their records as one flat frame.

    What `vltbench run` (train=True) and `vltbench eval` (train=False: never trains, needs a given,
    shipped or cached checkpoint) do: each missing cell is measured and written as one JSON record
    under `results/<method>/`; cells with a record already are skipped (resume) unless `overwrite`.

    methods: a name, 'a,b', a list of names, or 'all'. lengths: token counts K in 1..N ([4, 8, 32] or
    '4,8,32'). seeds: sampling seeds per cell. preset / config (a YAML file merged over the preset) /
    overrides ({'dit.steps': 200} or ['dit.steps=200'], as --set; they win over the keyword options
    below). generator, n_samples, extractor, inception_weights, data_root, device: the config values
    of the CLI options of the same names (None: the config's). checkpoint: use this file instead of
    the shipped / cached one (one method only). executor: 'local' (this process; under torchrun all
    its ranks), 'slurm' (needs slurm_partition) or 'submitit-local'. quiet: True turns progress bars
    and log lines off, False on, None leaves the current setting. save_samples: write each computed
    cell's guided samples (the gFID set) as an ADM-format .npz beside its record (named in
    `record["artifacts"]["samples_npz"]` with its sha256; n_samples x H x W x 3 bytes). dry_run: plan
    only (vltbench.evaluation.dry_run): returns the plan frame, trains, samples and writes nothing;
    throughput: the GFLOP/s its time estimates assume (None: a matmul measured here).

    Returns a pandas DataFrame with one row per requested cell, exactly as `vltbench.evaluation.store.load_frame`
    flattens a record (method, length, seed, cell_id, gfid, rfid, ..., sampling_gflops, align_*,
    path), in the order methods x lengths x seeds; cells computed now and cells found done are both
    included, other records in `results` are not. Under torchrun every rank returns the same frame.
    Raises UserError for every mistake in the arguments (with the CLI's message).
    """
    from vltbench.core import progress
    from vltbench.core.registry import datasets
    from vltbench.data import check_root
    from vltbench.evaluation.extractors.domains import auto_caveat, resolve_extractor

    set_quiet(quiet)
    names = method_names(methods)
    seed_list = parse_seeds(seeds)
    check_positive(n_samples, "--n-samples", "samples per cell, e.g. --n-samples 1000")
    cfg = load_config(preset, config, overrides, generator=generator, device=device, **{
        "eval.n_samples": n_samples, "eval.extractor": extractor,
        "eval.inception_weights": None if inception_weights is None else str(inception_weights),
        "data.root": None if data_root is None else str(data_root)})
    ks = parse_lengths(lengths, cfg.tokenizer.n_tokens, cfg.preset)
    name = resolve_extractor(cfg)  # refuses an extractor outside the dataset's domain, before any training
    if cfg.data.name in datasets and not dry_run:  # a missing --data-root: refused before any note is printed
        check_root(cfg.data.name, cfg.data.root)
    if caveat := auto_caveat(cfg):
        progress.log(caveat)
    cfg.eval.extractor = name  # records' configs name the extractor measured with, not "auto"
    if checkpoint is not None and len(names) > 1:
        raise UserError("--checkpoint applies to one method; pass a single --method with it")

    from vltbench.evaluation.executors import run as run_with
    from vltbench.evaluation.plan import SweepSpec

    results = Path(results)
    sweep = SweepSpec(cfg, names, ks, seed_list, results, overwrite, None if checkpoint is None else str(checkpoint),
                      train, train_args=train_args(preset, config, overrides, generator, data_root),
                      save_samples=save_samples)
    if dry_run:
        from vltbench.evaluation.dry_run import dry_run as plan_only
        return plan_only(sweep, throughput)
    with write_errors():
        outcome = run_with(sweep, executor, slurm_partition)
    busy = f", {len(outcome.busy)} left to other processes computing them" if outcome.busy else ""
    progress.log(f"{len(outcome.written)} cells written, {len(outcome.skipped)} already done{busy}; "
                 f"results in {results}")
    return _cells_frame(results, [c.cell_id for c in outcome.cells])


def _cells_frame(results: Path, cell_ids: list[str]) -> pd.DataFrame:
    """The records of the planned cells (written now or found done), in the planned order."""
    from vltbench.evaluation.store import load_frame, with_labels

    df = with_labels(load_frame(results, cell_ids=cell_ids).drop_duplicates("cell_id").reset_index(drop=True))
    if len(df) < len(cell_ids):
        warnings.warn(f"{len(cell_ids) - len(df)} of the {len(cell_ids)} requested cells have no record in {results} "
                      "yet (another process is computing them); evaluate again later to include them", stacklevel=3)
    return df


def train(method: str, *, preset: str = defaults.PRESET, config: str | Path | None = None,
          overrides: Mapping[str, Any] | Sequence[str] | None = None, generator: str | None = None,
          lengths: str | int | Sequence[int] | None = None, out: str | Path | None = None,
          data_root: str | Path | None = None, device: str | None = None, quiet: bool | None = None,
          tokenizer: str | Path | None = None) -> Path:
    """Train one method (tokenizer, latent cache, DiT(s)) as `vltbench train` does; returns the
    checkpoint's path (`out`, or its place in the checkpoint cache where evaluate finds it).

    generator: 'joint' (one DiT for all lengths) or 'separate' (one per length, for `lengths`, default
    the config's lengths.train). A training interrupted earlier resumes from its saved state.
    tokenizer: an imported tokenizer checkpoint (`vltbench import one-d-piece / titok / lgm` without a
    generator): its tokenizer stays frozen and only the DiT(s) train on its latents; the checkpoint (its
    origin says so) is evaluated with evaluate(..., checkpoint=path) (docs/released-tokenizers.md).
    """
    from vltbench.core import progress, registry

    set_quiet(quiet)
    registry.get(method)
    cfg = load_config(preset, config, overrides, generator=generator, device=device,
                      **{"data.root": None if data_root is None else str(data_root)})
    no_lengths = lengths is None or (isinstance(lengths, str) and not lengths)  # as the CLI without --lengths
    ks = None if no_lengths else parse_lengths(lengths, cfg.tokenizer.n_tokens, cfg.preset)
    if out is not None:
        out = writable_file(out, "--out")  # before training, not after

    from vltbench.core.device import resolve_device
    from vltbench.training.checkpoints import train_bundle

    from .data import load_data

    with write_errors():
        ds = load_data(cfg.data)
        _, path, timing = train_bundle(cfg, method, ds, resolve_device(cfg.device), out=out, lengths=ks,
                                       tokenizer=None if tokenizer is None else Path(tokenizer))
    progress.log(" ".join(f"{k}={v:.1f}" for k, v in timing.items()))
    return Path(path)


def import_lgm(tokenizer: str | Path, generator: str | Path | None, out: str | Path, *,
               latent_stats: str | Path | None = None, ema: bool = True, preset: str = defaults.IMPORT_PRESET,
               config: str | Path | None = None, overrides: Mapping[str, Any] | Sequence[str] | None = None) -> Path:
    """Import the official LGM release as `vltbench import lgm` does: tokenizer.pt (+ xl.pth and
    latents_stats.pt) -> one merge checkpoint at `out` (vltbench/models/official_lgm.py); returns its path."""
    from vltbench.models.official_lgm import import_lgm as run

    out = writable_file(out, "--out")
    return run(tokenizer, generator, out, latent_stats=latent_stats, ema=ema, preset=preset, config=config,
               overrides=parse_overrides(overrides))


def import_titok(family: str, weights: str | Path, out: str | Path, *, pixel_decoder: str | Path | None = None,
                 official_config: str | Path | None = None, preset: str = "titok-official",
                 config: str | Path | None = None,
                 overrides: Mapping[str, Any] | Sequence[str] | None = None) -> Path:
    """Import a released One-D-Piece (family 'one-d-piece') or TiTok ('titok') tokenizer as `vltbench import
    one-d-piece / titok` does (vltbench/models/official_titok.py); writes `out` and its config beside it
    (out with .yaml); returns the checkpoint's path."""
    from vltbench.models.official_titok import import_titok as run

    out = writable_file(out, "--out")
    return run(family, weights, out, pixel_decoder=pixel_decoder, official_config=official_config, preset=preset,
               config=config, overrides=parse_overrides(overrides))


def leaderboard(results: str | Path | pd.DataFrame = defaults.RESULTS, *,
                frame: bool = False) -> list[Table] | pd.DataFrame:
    """The leaderboard of a results folder (or record file, or a frame from `evaluate`).

    Returns one `vltbench.reporting.tables.Table` per comparable group of records (same dataset, metric spec and
    sampler; render them with `vltbench.reporting.formats.render(tables, "md" | "csv" | "html")`), or with
    frame=True one tidy DataFrame: the group fields, then per row (row = method | floor | ceiling)
    method, K, seeds, each metric's mean and `<metric>_std`, pareto, and `best` (the columns where
    the row is best). Raises UserError when there are no records.
    """
    from vltbench.reporting.tables import leaderboard as _leaderboard
    from vltbench.reporting.tables import tidy_frame

    tables = _leaderboard(load_records(results))
    return tidy_frame(tables) if frame else tables


def plot(results: str | Path | pd.DataFrame = defaults.RESULTS, out: str | Path | None = None) -> list[Path]:
    """The figures of `vltbench plot` (trade-off, rFID and alignment vs K, sample grid, training loss
    curves where their logs exist; PNG + SVG per comparable group) written to `out`; returns their paths.

    out: default `<results>/plots`, beside the records (the committed results/plots only when named);
    required when `results` is a frame (from evaluate or load_frame)."""
    from vltbench.reporting.figures import default_out, make_plots

    df = load_records(results)
    if out is None:
        if not isinstance(results, (str, Path)):
            raise UserError("plot: pass out=FOLDER for the figures when results is a frame")
        out = default_out(results)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the plot folder ({e.strerror or e}); choose another with --out") from None
    root = None if not isinstance(results, (str, Path)) else Path(results)
    try:
        return make_plots(df, out, root)
    except OSError as e:
        if e.filename is None or not str(e.filename).startswith(str(out)):
            raise
        raise write_failed(Path(e.filename), "--out", e) from None


def report(results: str | Path | pd.DataFrame = defaults.RESULTS, out: str | Path | None = None) -> Path:
    """The report page of `vltbench report`: one self-contained HTML file (no external asset, opens
    offline) with, per comparable group, the leaderboard (floor / ceiling rows, ± intervals, sortable
    columns), the trade-off, rFID / reconstruction and alignment figures, the same-seed sample strips
    of every method across K and every record's provenance; then the training loss curves where their
    logs exist. Returns the file's path.

    out: default `<results>/report.html` (beside the records); required when `results` is a frame."""
    from vltbench.core.atomic import atomic_write_text
    from vltbench.reporting.page import build

    df = load_records(results)
    root = None  # the folder holding the records (their sample grids lie beside them)
    if isinstance(results, (str, Path)):
        root = Path(results).parent if Path(results).is_file() else Path(results)
    if out is None:
        if root is None:
            raise UserError("report: pass out=FILE.html for the page when results is a frame")
        out = root / "report.html"
    out = writable_file(out, "--out")
    text = build(df, root, title=f"vltbench report: {results}" if root is not None else None)
    try:
        atomic_write_text(out, text)
        mask = os.umask(0)
        os.umask(mask)
        out.chmod(0o666 & ~mask)  # a page to share: readable as any new file (the temp file was 0600)
    except OSError as e:
        raise write_failed(out, "--out", e) from None
    return out


def check(baseline: str | Path | pd.DataFrame, candidate: str | Path | pd.DataFrame = defaults.RESULTS, *,
          report: str | Path | None = None, min_effect: float | Mapping[str, float] | None = None,
          z: float = defaults.Z,
          metrics: str | Sequence[str] | None = None, method_map: str | Mapping[str, str] | Sequence[str] | None = None,
          lengths: str | int | Sequence[int] | None = None, require_all: bool = False) -> CheckReport:
    """Regression check of `vltbench check`: candidate cells vs baseline cells with the same
    (method, generator, length), paired on (training seed, sampling seed), flagged only beyond
    max(z x noise, min_effect).

    baseline / candidate: results folders, record files or frames (from evaluate or load_frame); a
    corrupt record in either is a UserError naming it. Only the cells (and seed pairs) both sides
    have are compared; the baseline's others are listed in `.not_checked`, a failure only with
    require_all=True. metrics: default every ranked metric the baseline records carry (gfid, rfid,
    class_acc, kid, precision, ...). min_effect: default each metric's declared smallest effect
    (vltbench.evaluation.metrics.specs: gFID 1.0, class_acc 0.02, KID 0.002, ...); {metric: value} overrides
    those metrics, one number overrides all. method_map: {NEW: BASELINE} (or ['NEW=BASELINE']) holds
    a candidate method to a baseline method's numbers. lengths: compare only these K. report: also
    write the machine-readable JSON there. Returns a `vltbench.reporting.check.CheckReport` (`.failed`,
    `.rows`, `.not_checked`, `.notes`, `.to_json()`, `str(report)` is the table). Raises UserError
    when the two sides are not comparable (other sample counts, extractor, sampler or guidance
    protocol) or share no cell: `vltbench check` exits 0 (passed), 1 (failed) or 2 (refused).
    """
    import pandas as pd

    from vltbench.reporting.check import check as _check

    for what, p in (("baseline", baseline), ("candidate", candidate)):
        if not isinstance(p, pd.DataFrame) and not Path(p).exists():
            raise UserError(f"{what} {p} does not exist; pass an existing results folder or record file")
    if report is not None:
        report = writable_file(report, "--report")
    frames = [p if isinstance(p, pd.DataFrame) else strict_frame(p, what)
              for what, p in (("baseline", baseline), ("candidate", candidate))]
    for what, p, df in zip(("baseline", "candidate"), (baseline, candidate), frames):
        if df.empty:
            raise UserError(f"{what} {'frame' if isinstance(p, pd.DataFrame) else p} holds no valid records")
    metric_list = parse_names(metrics, "--metrics")
    if isinstance(min_effect, Mapping):
        effect = {str(k): float(v) for k, v in min_effect.items()}
    elif min_effect is not None:
        effect = {m: float(min_effect) for m in (metric_list or _all_metrics(frames[0]))}
    else:
        effect = {}
    ks = None if lengths is None else tuple(parse_lengths(lengths, 1 << 30))
    result = _check(frames[0], frames[1], min_effect=effect, z=z, metrics=metric_list,
                    method_map=parse_method_map(method_map), lengths=ks, require_all=require_all)
    if report is not None:
        from vltbench.core.atomic import atomic_write_text
        try:
            atomic_write_text(report, result.to_json())
        except OSError as e:
            raise write_failed(report, "--report", e) from None
    return result


def _all_metrics(df: pd.DataFrame) -> tuple[str, ...]:
    from vltbench.reporting.check import checked_metrics
    return checked_metrics(df)


def flops(method: str, lengths: str | int | Sequence[int], *, preset: str = defaults.PRESET,
          config: str | Path | None = None, overrides: Mapping[str, Any] | Sequence[str] | None = None,
          data_root: str | Path | None = None, num_classes: int | None = None) -> pd.DataFrame:
    """GFLOPs per image per stage and parameter counts at each length, as `vltbench flops` prints.

    fvcore convention (1 multiply-add = 1 FLOP; attention counted). No weights or images are needed:
    an untrained model of the configured architecture is counted. The class count (the DiT's label
    embedding, so params_dit) comes from the configured dataset: 13 for embedded, 10 for digits, the
    class folders under data.root (data_root) for folder / imagenet; without data.root, imagenet
    counts ImageNet-1k's 1000 classes and folder needs num_classes. `num_classes` must agree with a
    count the data gives.

    Returns a DataFrame, one row per K: method, length, dit_forward_gflops, nfe, nfe_cfg,
    sampling_gflops (counted with guidance on when the protocol can use it), encoder_gflops,
    decoder_gflops, decoder_tokens, params_dit / params_tokenizer / params_method, skipped_ops (ops
    fvcore does not count), num_classes. `df.attrs` holds "title" and "notes" (what the CLI prints).
    """
    import pandas as pd

    from vltbench.core import registry

    registry.get(method)
    cfg = load_config(preset, config, overrides, **{"data.root": None if data_root is None else str(data_root)})
    ks = parse_lengths(lengths, cfg.tokenizer.n_tokens, cfg.preset)
    n_classes, source = dataset_classes(cfg, num_classes)

    from vltbench.evaluation.metrics.flops import flops_rows
    from vltbench.models.bundle import build_bundle

    bundle = build_bundle(cfg, method, num_classes=n_classes)
    bundle.method.freeze()
    bundle.dits["joint"] = bundle.new_dit()
    s = cfg.sampler
    # Sampling cost depends only on whether guidance is on; a searched scale is known only per cell.
    w = s.cfg_scale if s.guidance == "fixed" else max(s.cfg_scales)
    df = pd.DataFrame(flops_rows(bundle, ks, s, w))
    df["num_classes"] = n_classes
    notes = [f"params_dit counts a label embedding for {n_classes} classes ({source})"]
    if s.guidance == "search" and w != 1.0:
        notes.append(f"sampling_gflops count guidance on (both CFG branches for t in {list(s.cfg_interval)}); a cell "
                     f"whose searched scale is 1.0 samples with nfe = {s.steps - 1}")
    df.attrs = {"title": f"{method} on {preset}: GFLOPs per image (1 FMA = 1 FLOP, fvcore; attention counted)",
                "notes": notes}
    return df


def score(samples: str | Path, *, reference: str | Path = "dataset", name: str | None = None,
          preset: str = defaults.PRESET, config: str | Path | None = None,
          overrides: Mapping[str, Any] | Sequence[str] | None = None, extractor: str | None = None,
          inception_weights: str | Path | None = None, data_root: str | Path | None = None,
          results: str | Path = "results/scores", seed: int = 0, device: str | None = None,
          quiet: bool | None = None) -> dict:
    """Score external samples (an ADM-format .npz or an image folder) with vltbench's metrics, as
    `vltbench score` does (vltbench.evaluation.score); writes and returns the record (origin
    "external"), whose "path" key names its file. reference: "dataset" (the config's test reference,
    the one a run measures against), an ADM reference .npz or a folder of real images."""
    from vltbench.core import progress
    from vltbench.core.device import resolve_device
    from vltbench.evaluation.extractors.domains import resolve_extractor
    from vltbench.evaluation.score import score_samples, write_score

    set_quiet(quiet)
    seed = parse_seeds(seed)[0]
    cfg = load_config(preset, config, overrides, device=device, **{
        "eval.extractor": extractor, "data.root": None if data_root is None else str(data_root),
        "eval.inception_weights": None if inception_weights is None else str(inception_weights)})
    cfg.eval.extractor = resolve_extractor(cfg)
    with write_errors():
        rec = score_samples(cfg, samples, str(reference), name=name, seed=seed, device=resolve_device(cfg.device))
        path, new = write_score(rec, results)
    progress.log(f"{'written' if new else 'already scored, kept'}: {path}")
    return {**rec, "path": str(path)}

