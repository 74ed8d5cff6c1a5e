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

This module imports nothing heavy (torch, pandas) until a function runs, so `import vltbench` and the
CLI's start stay fast.
"""

from __future__ import annotations

import errno
import numbers
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vltbench.core import defaults
from vltbench.core.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from vltbench.core.config import Config
    from vltbench.reporting.check import CheckReport
    from vltbench.reporting.tables import Table

__all__ = ["evaluate", "train", "leaderboard", "check", "flops", "plot", "report", "import_lgm", "import_titok", "UserError"]

IMAGENET_CLASSES = 1000  # ImageNet-1k: the class count `flops` assumes for data.name=imagenet without data.root


# -- validation shared by the API and the CLI --------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def parse_lengths(lengths: str | int | Iterable[int] | None, n_max: int, preset: str | None = None) -> list[int]:
    """'8,16,32' or [8, 16, 32] -> [8, 16, 32]; every mistake is a one-line UserError. `preset`: the
    preset in use, named when a length exceeds its N (with the presets where that length is valid)."""
    if isinstance(lengths, str) or lengths is None:
        if lengths is None or not lengths.strip():
            raise UserError(f"--lengths is empty; give comma-separated token counts in 1..{n_max}, "
                            f"e.g. --lengths 8,16,{n_max}")
        items: list[Any] = [p.strip() for p in lengths.split(",")]
    elif _is_int(lengths):
        items = [lengths]
    else:
        try:
            items = list(lengths)
        except TypeError:
            raise UserError(f"--lengths {lengths!r}: give token counts in 1..{n_max} as a list of integers "
                            f"or comma-separated text, e.g. [8, 16, {n_max}]") from None
        if not items:
            raise UserError(f"--lengths is empty; give comma-separated token counts in 1..{n_max}, "
                            f"e.g. --lengths 8,16,{n_max}")
    out: list[int] = []
    for p in items:
        if _is_int(p):
            k = int(p)
        else:
            try:
                k = int(p) if isinstance(p, str) else None
            except ValueError:
                k = None
            if k is None:
                raise UserError(f"--lengths: {p!r} is not an integer; give comma-separated integers in 1..{n_max}")
        out.append(k)
    from vltbench.evaluation.plan import check_lengths

    return check_lengths(out, n_max, preset)  # the range rule a sweep's plan applies


def parse_seeds(seeds: str | int | Iterable[int]) -> list[int]:
    """'0,1,2' or [0, 1, 2] -> [0, 1, 2]: at least one seed, each once."""
    if _is_int(seeds):
        out, text = [int(seeds)], str(seeds)
    elif isinstance(seeds, str):
        text = seeds
        try:
            out = [int(x) for x in seeds.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--seeds {text!r}: give comma-separated integers, e.g. --seeds 0,1,2") from None
    else:
        try:
            items = list(seeds)
        except TypeError:
            items = None
        if items is None or not all(_is_int(s) for s in items):
            raise UserError(f"--seeds {seeds!r}: give comma-separated integers, e.g. --seeds 0,1,2")
        out = [int(s) for s in items]
        text = ",".join(map(str, out))  # the message reads as the CLI's
    if not out or len(set(out)) != len(out):
        raise UserError(f"--seeds {text!r}: give at least one seed, each once")
    from vltbench.core.config import SEED_MAX

    for s in out:  # numpy / torch generators take 32-bit seeds: refuse now, not after a cell's work
        if not 0 <= s <= SEED_MAX:
            raise UserError(f"--seeds: {s} is outside 0..{SEED_MAX} (seeds are 32-bit); give e.g. --seeds 0,1,2")
    return out


def parse_sets(sets: Iterable[str] | None) -> dict:
    """['dit.steps=200', ...] (the CLI's --set) -> {'dit.steps': 200}; values are plain YAML."""
    import yaml

    out = {}
    for s in sets or []:
        key, eq, value = str(s).partition("=")
        if not eq or not key.strip():
            raise UserError(f"--set {s!r}: expected KEY=VALUE, e.g. --set dit.steps=200")
        try:
            # safe_load: tags such as !!python/object are refused, never constructed
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            why = " ".join(str(getattr(e, "problem", None) or e).split())
            raise UserError(f"--set {s!r}: the value is not plain YAML ({why}); give a number, string or list, "
                            "quoted if needed") from None
    return out


def _overrides(overrides: Mapping[str, Any] | Iterable[str] | None) -> dict:
    """`overrides`: {"section.key": value} or the CLI's ["section.key=value", ...]."""
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        for key in overrides:
            if not isinstance(key, str) or not key.strip():
                raise UserError(f"overrides: key {key!r} is not a dotted config key; give e.g. {{'dit.steps': 200}}")
        return {k.strip(): v for k, v in overrides.items()}
    if isinstance(overrides, str):
        overrides = [overrides]
    return parse_sets(overrides)


def load_config(preset: str = defaults.PRESET, config: str | Path | None = None,
                overrides: Mapping[str, Any] | Iterable[str] | None = None, **named: Any) -> Config:
    """The resolved config: preset, the YAML file `config` over it, then `named` options
    ("eval.n_samples": 1000, ...; None = not given), then `overrides` (which win, as --set does)."""
    from vltbench.core.config import load_config as _load

    values = {k: v for k, v in named.items() if v is not None}
    given = _overrides(overrides)
    values.update(given)
    cfg = _load(preset, config, values, labels={k: f"--set {k}={_yaml_text(v)}" for k, v in given.items()})
    _check_methods_config(cfg)
    return cfg


def _check_methods_config(cfg: Config) -> None:
    """Each `methods.<name>` section names a registered method and its options validate (strictly),
    before any work."""
    from vltbench.core import registry
    from vltbench.core.config import check_method_sections, validate_options

    check_method_sections(cfg, registry.names())
    for name, options in cfg.methods.items():
        validate_options(registry.get(name).Options, options or {}, name)


def _yaml_text(value: Any) -> str:
    """A value as --set would take it (flow-style YAML: [1.0, .nan])."""
    import yaml

    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    except yaml.YAMLError:
        return repr(value)
    return text[:-3].strip() if text.endswith("\n...") else text


def train_args(preset: str, config: str | Path | None, overrides: Mapping[str, Any] | Iterable[str] | None,
               generator: str | None = None, data_root: str | Path | None = None) -> str:
    """' --preset P --config F --set k=v ...': the options of a call that shape training, as CLI text,
    so a hint to run `vltbench train` trains what the call would load (not the defaults)."""
    import json
    import shlex

    out = []
    if preset != defaults.PRESET:
        out += ["--preset", preset]
    if config is not None:
        out += ["--config", str(config)]
    if generator is not None:
        out += ["--generator", generator]
    if data_root is not None:
        out += ["--data-root", str(data_root)]
    for key, value in _overrides(overrides).items():
        text = value if isinstance(value, str) else json.dumps(value)  # JSON is plain YAML, as --set reads it
        out += ["--set", f"{key}={text}"]
    return "".join(f" {shlex.quote(x)}" for x in out)


def method_names(methods: str | Iterable[str] | None) -> list[str]:
    """'merge', 'merge,tail-drop', ['merge', 'tail-drop'] or 'all' -> registered names (unknown ones fail
    with close matches)."""
    from vltbench.core import registry

    texts = [methods] if isinstance(methods, str) or methods is None else list(methods)
    names: list[str] = []
    for text in texts:
        if text:
            names += [m.strip() for m in str(text).split(",") if m.strip()]
    if not names:
        raise UserError("no method given; pass --method NAME (see `vltbench methods`), --methods a,b or --method all")
    if "all" in names:
        return registry.names()
    for n in names:
        registry.get(n)  # unknown names fail here with close matches
    return list(dict.fromkeys(names))


def _positive(value: int | None, option: str, example: str) -> None:
    if value is not None and (not _is_int(value) or value < 1):
        raise UserError(f"{option} {value}: give a positive number of {example}")


def writable_file(path: str | Path, option: str) -> Path:
    """Fail now (one line) if `path` cannot be written: its folder cannot be created or it is a folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; pass a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option} {path}: cannot create its folder ({e.strerror or e}); choose another path") from None
    return path


def write_failed(path: str | Path, option: str, e: OSError) -> UserError:
    return UserError(f"{option} {path} could not be written ({e.strerror or e}); choose another path or free space")


def _set_quiet(quiet: bool | None) -> None:
    if quiet is not None:
        from vltbench.core import progress
        progress.set_quiet(quiet)


def _records(results: str | Path | pd.DataFrame, what: str = "results", option: str = "--results") -> pd.DataFrame:
    """The flat frame of a results folder (or one record file), or a frame given as is; never empty."""
    import pandas as pd

    if isinstance(results, pd.DataFrame):
        if results.empty:
            raise UserError(f"the {what} frame holds no records; pass a frame from vltbench.evaluate or a results folder")
        return results
    from vltbench.evaluation.store import load_frame

    path = Path(results)
    if not path.exists():
        raise UserError(f"{what} folder {path} does not exist; pass {option} DIR holding vltbench records")
    df = load_frame(path)
    if df.empty:
        raise UserError(f"no valid records under {path}; run `vltbench run` first")
    return df


WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


@contextmanager
def _write_errors():
    """Disk full (or a quota, a file-size limit, a read-only file system) while writing a cache file
    or a checkpoint: one UserError naming the file. Finished records and checkpoints are kept."""
    try:
        yield
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        where = f" {e.filename}" if e.filename else ""
        raise UserError(f"could not write{where} ({e.strerror or e}); free space (or raise the quota / file-size "
                        "limit) and run again: what was finished is kept") from None


# -- the functions ---------------------------------------------------------------------------------

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
    record["artifacts"]["samples_npz"] with its sha256; n_samples x H x W x 3 bytes). dry_run: plan
    only (vltbench.evaluation.dry_run): returns the plan frame, trains, samples and writes nothing;
    throughput: the GFLOP/s its time estimates assume (None: a matmul measured here).

    Returns a pandas DataFrame with one row per requested cell, exactly as `vltbench.evaluation.store.load_frame`
    flattens a record (method, length, seed, cell_id, gfid, rfid, ..., sampling_gflops, align_*,
    path), in the order methods x lengths x seeds; cells computed now and cells found done are both
    included, other records in `results` are not. Under torchrun every rank returns the same frame.
    Raises UserError for every mistake in the arguments (with the CLI's message).
    """
    from vltbench.core import progress
    from vltbench.evaluation.metrics.domains import auto_caveat, resolve_extractor

    _set_quiet(quiet)
    names = method_names(methods)
    seed_list = parse_seeds(seeds)
    _positive(n_samples, "--n-samples", "samples per cell, e.g. --n-samples 1000")
    cfg = load_config(preset, config, overrides, generator=generator, device=device, **{
        "eval.n_samples": n_samples, "eval.extractor": extractor,
        "eval.inception_weights": None if inception_weights is None else str(inception_weights),
        "data.root": None if data_root is None else str(data_root)})
    ks = parse_lengths(lengths, cfg.tokenizer.n_tokens, cfg.preset)
    name = resolve_extractor(cfg)  # refuses an extractor outside the dataset's domain, before any training
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
    with _write_errors():
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
          data_root: str | Path | None = None, device: str | None = None, quiet: bool | None = None) -> Path:
    """Train one method (tokenizer, latent cache, DiT(s)) as `vltbench train` does; returns the
    checkpoint's path (`out`, or its place in the checkpoint cache where evaluate finds it).

    generator: 'joint' (one DiT for all lengths) or 'separate' (one per length, for `lengths`, default
    the config's lengths.train). A training interrupted earlier resumes from its saved state.
    """
    from vltbench.core import progress, registry

    _set_quiet(quiet)
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

    with _write_errors():
        ds = load_data(cfg.data)
        _, path, timing = train_bundle(cfg, method, ds, resolve_device(cfg.device), out=out, lengths=ks)
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
               overrides=_overrides(overrides))


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
               config=config, overrides=_overrides(overrides))


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

    tables = _leaderboard(_records(results))
    return tidy_frame(tables) if frame else tables


def plot(results: str | Path | pd.DataFrame = defaults.RESULTS, out: str | Path | None = None) -> list[Path]:
    """The figures of `vltbench plot` (trade-off, rFID and alignment vs K, sample grid, training loss
    curves where their logs exist; PNG + SVG per comparable group) written to `out`; returns their paths.

    out: default `<results>/plots`, beside the records (the committed results/plots only when named);
    required when `results` is a frame (from evaluate or load_frame)."""
    from vltbench.reporting.figures import default_out, make_plots

    df = _records(results)
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

    df = _records(results)
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
    frames = [p if isinstance(p, pd.DataFrame) else _strict_frame(p, what)
              for what, p in (("baseline", baseline), ("candidate", candidate))]
    for what, p, df in zip(("baseline", "candidate"), (baseline, candidate), frames):
        if df.empty:
            raise UserError(f"{what} {'frame' if isinstance(p, pd.DataFrame) else p} holds no valid records")
    metric_list = _names(metrics, "--metrics")
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


def _names(value: str | Sequence[str] | None, option: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    out = tuple(dict.fromkeys(x.strip() for item in items for x in str(item).split(",") if x.strip()))
    if not out:
        raise UserError(f"{option} is empty; give comma-separated metric keys, e.g. {option} gfid,class_acc")
    return out


def parse_method_map(value: str | Mapping[str, str] | Sequence[str] | None) -> dict | None:
    """'new=old,b=a', ['new=old'] or {new: old} -> {new: old}."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()} or None
    items = [value] if isinstance(value, str) else list(value)
    out = {}
    for item in (x.strip() for i in items for x in str(i).split(",")):
        new, eq, old = item.partition("=")
        if not eq or not new.strip() or not old.strip():
            raise UserError(f"--method-map {item!r}: expected NEW=BASELINE, e.g. --method-map my-merge=merge "
                            "(checks candidate method my-merge against the baseline's merge)")
        out[new.strip()] = old.strip()
    return out or None


def _strict_frame(path: str | Path, what: str) -> pd.DataFrame:
    """The records of a results folder for `check`: a record that does not parse or validate is a
    refusal naming it (a check that silently skipped it would compare less than it says)."""
    from vltbench.evaluation.store import ResultStore, load_frame

    store = ResultStore(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = load_frame(path, store=store)
    if store.skipped:
        bad, why = store.skipped[0]
        more = f" (and {len(store.skipped) - 1} more)" if len(store.skipped) > 1 else ""
        raise UserError(f"{what} record {bad} is corrupt ({why}){more}; restore it (e.g. from version control) "
                        f"or remove it, then check again")
    return df


def dataset_classes(cfg: Config, given: int | None = None) -> tuple[int, str]:
    """(class count, where it comes from) of the configured dataset, without loading its images.

    embedded / mnist / digits: their class lists. folder / imagenet with data.root: the class folders (the
    loader's rule: root/train/<class>, or root/<class> for a folder without train/ and val/).
    imagenet without data.root: ImageNet-1k's 1000, or `given`. folder without data.root: `given`, else
    a UserError. A `given` count that contradicts a known one is a UserError."""
    d = cfg.data
    if given is not None and (not _is_int(given) or given < 1):
        raise UserError(f"--num-classes {given}: give a positive number of classes, e.g. --num-classes 1000")
    from .data import class_names

    known, source = None, ""
    classes = class_names(d.name)  # the dataset's entry: names, a count, or None (its folders tell)
    if classes is not None:
        known, source = (classes if isinstance(classes, int) else len(classes)), f"dataset {d.name}"
    elif d.root is not None:
        from vltbench.data.folders import count_classes

        known = count_classes(d.name, d.root)
        source = f"class folders of {d.root}"
    if known is not None:
        if given is not None and given != known:
            where = f" in {d.root}" if d.root is not None and classes is None else ""
            raise UserError(f"--num-classes {given}: dataset {d.name!r} has {known} classes{where}; drop "
                            "--num-classes, which is for a folder or imagenet dataset whose data is not here")
        return known, source
    if given is not None:
        return int(given), "--num-classes"
    if d.name == "imagenet":
        return IMAGENET_CLASSES, "ImageNet-1k; data.root is not set, --num-classes N counts another number"
    raise UserError(f"the class count of dataset {d.name!r} (it sizes the DiT's label embedding) is unknown without "
                    "its data: set --data-root to the dataset folder or pass --num-classes N")


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
    from vltbench.evaluation.metrics.domains import resolve_extractor
    from vltbench.evaluation.score import score_samples, write_score

    _set_quiet(quiet)
    seed = parse_seeds(seed)[0]
    cfg = load_config(preset, config, overrides, device=device, **{
        "eval.extractor": extractor, "data.root": None if data_root is None else str(data_root),
        "eval.inception_weights": None if inception_weights is None else str(inception_weights)})
    cfg.eval.extractor = resolve_extractor(cfg)
    with _write_errors():
        rec = score_samples(cfg, samples, str(reference), name=name, seed=seed, device=resolve_device(cfg.device))
        path, new = write_score(rec, results)
    progress.log(f"{'written' if new else 'already scored, kept'}: {path}")
    return {**rec, "path": str(path)}

