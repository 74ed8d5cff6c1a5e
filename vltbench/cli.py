"""The `vltbench` command line (Typer). User mistakes end as one line on stderr, exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
import yaml

from . import progress, registry
from .config import load_config
from .errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark variable-length image tokenizers in latent diffusion: quality vs compute per token length.")

PRESET = typer.Option("tiny", "--preset", "-p", help="Config preset: tiny (embedded CPU default), imagenet256, imagenet256-xl.")
CONFIG = typer.Option(None, "--config", "-c", help="YAML file merged over the preset (same keys as configs/tiny.yaml).")
SET = typer.Option(None, "--set", help="Override one config value, e.g. --set dit.steps=200 (repeatable).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars or log lines.")
DEVICE = typer.Option(None, "--device", help="auto (CUDA when present), cpu or cuda[:i]. Default: the config's device.")
RESULTS = typer.Option(Path("results/runs"), "--results", "-r", help="Results folder (one JSON record per cell).")


def parse_lengths(text: str | None, n_max: int) -> list[int]:
    """'8,16,32' -> [8, 16, 32]; every mistake is a one-line error."""
    if text is None or not text.strip():
        raise UserError(f"--lengths is empty; give comma-separated token counts in 1..{n_max}, e.g. --lengths 8,16,{n_max}")
    out = []
    for part in text.split(","):
        p = part.strip()
        try:
            k = int(p)
        except ValueError:
            raise UserError(f"--lengths: {p!r} is not an integer; give comma-separated integers in 1..{n_max}") from None
        if k <= 0 or k > n_max:
            raise UserError(f"--lengths: {k} is outside 1..{n_max} (the method's maximum length N={n_max})")
        if k in out:
            raise UserError(f"--lengths: {k} is given twice; list each length once")
        out.append(k)
    return out


def parse_sets(sets: list[str] | None) -> dict:
    out = {}
    for s in sets or []:
        key, eq, value = s.partition("=")
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


def _writable_file(path: Path, option: str) -> Path:
    """Fail now (one line) if `path` cannot be written: its folder cannot be created or it is a folder."""
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; pass a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option} {path}: cannot create its folder ({e.strerror or e}); choose another path") from None
    return path


def _write_failed(path: Path, option: str, e: OSError) -> UserError:
    return UserError(f"{option} {path} could not be written ({e.strerror or e}); choose another path or free space")


def _config(preset, config, sets, **named):
    overrides = {k: v for k, v in named.items() if v is not None}
    overrides.update(parse_sets(sets))
    return load_config(preset, config, overrides)


def _methods_arg(method: Optional[str], methods: Optional[str]) -> list[str]:
    names = []
    for text in (method, methods):
        if text:
            names += [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise UserError("no method given; pass --method NAME (see `vltbench methods`), --methods a,b or --method all")
    if "all" in names:
        return registry.names()
    for n in names:
        registry.get(n)  # unknown names fail here with close matches
    return names


@app.command("methods")
def methods_cmd(preset: str = PRESET):
    """List registered methods: name, family, description, maximum length."""
    from rich.console import Console
    from rich.table import Table

    cfg = load_config(preset)
    table = Table("name", "family", "description", "max length")
    for name in registry.names():
        cls = registry.get(name)
        table.add_row(name, cls.family, cls.description, str(cfg.tokenizer.n_tokens))
    Console(width=160).print(table)


@app.command("train")
def train_cmd(method: str = typer.Option(..., "--method", "-m", help="Method name (see `vltbench methods`)."),
              preset: str = PRESET, config: Optional[Path] = CONFIG, sets: Optional[list[str]] = SET,
              generator: Optional[str] = typer.Option(None, help="joint (one DiT for all lengths) or separate (one per length)."),
              lengths: Optional[str] = typer.Option(None, help="Lengths for --generator separate (default: the config's lengths.train)."),
              out: Optional[Path] = typer.Option(None, "--out", "-o", help="Checkpoint path (default: the checkpoint cache)."),
              data_root: Optional[str] = typer.Option(None, help="Dataset folder for folder/imagenet datasets."),
              device: Optional[str] = DEVICE, quiet: bool = QUIET):
    """Train one method on a preset: tokenizer, latent cache, DiT(s); writes a checkpoint."""
    from .checkpoints import train_bundle
    from .data import load_data
    from .device import resolve_device

    progress.set_quiet(quiet)
    registry.get(method)
    cfg = _config(preset, config, sets, generator=generator, device=device, **{"data.root": data_root})
    ks = parse_lengths(lengths, cfg.tokenizer.n_tokens) if lengths else None
    if out is not None:
        _writable_file(out, "--out")  # before training, not after
    ds = load_data(cfg.data)
    _, path, timing = train_bundle(cfg, method, ds, resolve_device(cfg.device), out=out, lengths=ks)
    progress.log(" ".join(f"{k}={v:.1f}" for k, v in timing.items()))
    if _is_main():  # under torchrun rank 0 speaks for all
        typer.echo(str(path))


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: give comma-separated integers, e.g. --seeds 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: give at least one seed, each once")
    return seeds


def _sweep(train: bool, method, methods, lengths, preset, config, sets, results, seeds, generator, overwrite,
           checkpoint, n_samples, extractor, inception_weights, data_root, device, quiet, executor="local",
           slurm_partition=None):
    from .executors import run as run_with
    from .sweep import SweepSpec

    progress.set_quiet(quiet)
    names = _methods_arg(method, methods)
    if n_samples is not None and n_samples < 1:
        raise UserError(f"--n-samples {n_samples}: give a positive number of samples per cell, e.g. --n-samples 1000")
    cfg = _config(preset, config, sets, generator=generator, device=device, **{
        "eval.n_samples": n_samples, "eval.extractor": extractor, "eval.inception_weights": inception_weights,
        "data.root": data_root})
    ks = parse_lengths(lengths, cfg.tokenizer.n_tokens)
    if checkpoint is not None and len(names) > 1:
        raise UserError("--checkpoint applies to one method; pass a single --method with it")
    spec = run_with(SweepSpec(cfg, names, ks, _parse_seeds(seeds), results, overwrite, checkpoint, train),
                    executor, slurm_partition)
    progress.log(f"{len(spec.written)} cells written, {len(spec.skipped)} already done; results in {results}")
    if _is_main():
        _print_leaderboard(results)


def _is_main() -> bool:
    from .dist import is_main
    return is_main()


def _rank() -> str:
    """'rank R/W: ' under torchrun with several processes (so a failure names its rank), else ''."""
    import os
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return ""
    from .dist import prefix
    return prefix()


def _print_leaderboard(results: Path) -> None:
    from .report import leaderboard
    from .store import load_frame

    df = load_frame(results)
    if df.empty:
        typer.echo(f"no records under {results}")
        return
    _show_tables(leaderboard(df), "rich")


def _show_tables(tables, fmt: str) -> None:
    """rich in a terminal; piped or logged, markdown, which keeps every column (rich would squeeze
    ~20 columns into 80 characters)."""
    from .report import print_tables, render

    if fmt == "rich" and sys.stdout.isatty():
        print_tables(tables)
    else:
        typer.echo(render(tables, "md" if fmt == "rich" else fmt))


SWEEP_OPTS = dict(
    method=typer.Option(None, "--method", "-m", help="Method name, or 'all' (see `vltbench methods`)."),
    methods=typer.Option(None, "--methods", help="Several methods, comma-separated."),
    lengths=typer.Option(..., "--lengths", "-l", help="Token lengths K to evaluate, comma-separated, each in 1..N."),
    seeds=typer.Option("0", "--seeds", help="Sampling seeds per cell, comma-separated; tables show mean +/- spread."),
    generator=typer.Option(None, "--generator", help="joint (one DiT for all lengths, default) or separate (one per length)."),
    overwrite=typer.Option(False, "--overwrite", help="Recompute cells that already have a record."),
    checkpoint=typer.Option(None, "--checkpoint", help="Use this checkpoint file instead of the shipped/cached one."),
    n_samples=typer.Option(None, "--n-samples", help="Generated samples (and reconstructions) per cell."),
    extractor=typer.Option(None, "--extractor", help="Feature extractor: inception (FID) or randproj (cheap, FD_randproj, not FID)."),
    inception_weights=typer.Option(None, "--inception-weights", help="Path to the FID Inception weights (never downloaded)."),
    data_root=typer.Option(None, "--data-root", help="Dataset folder for folder/imagenet datasets."),
    executor=typer.Option("local", "--executor", help="local (this process; under torchrun, all its ranks), slurm "
                          "(one Slurm job array task per missing cell, via submitit; needs --slurm-partition and "
                          "pip install 'vltbench\\[slurm]'; resources: --set slurm.KEY=VALUE) or submitit-local "
                          "(the same job array as local processes)."),
    slurm_partition=typer.Option(None, "--slurm-partition", help="Slurm partition for --executor slurm."),
)


def run_cmd(ctx: typer.Context, method: Optional[str] = SWEEP_OPTS["method"], methods: Optional[str] = SWEEP_OPTS["methods"],
            lengths: str = SWEEP_OPTS["lengths"], preset: str = PRESET, config: Optional[Path] = CONFIG,
            sets: Optional[list[str]] = SET, results: Path = RESULTS, seeds: str = SWEEP_OPTS["seeds"],
            generator: Optional[str] = SWEEP_OPTS["generator"], overwrite: bool = SWEEP_OPTS["overwrite"],
            checkpoint: Optional[str] = SWEEP_OPTS["checkpoint"], n_samples: Optional[int] = SWEEP_OPTS["n_samples"],
            extractor: Optional[str] = SWEEP_OPTS["extractor"], inception_weights: Optional[str] = SWEEP_OPTS["inception_weights"],
            data_root: Optional[str] = SWEEP_OPTS["data_root"], device: Optional[str] = DEVICE, quiet: bool = QUIET,
            executor: str = SWEEP_OPTS["executor"], slurm_partition: Optional[str] = SWEEP_OPTS["slurm_partition"]):
    # one implementation for both commands: `run` may train, `eval` never does
    _sweep(ctx.info_name == "run", method, methods, lengths, preset, config, sets, results, seeds, generator, overwrite,
           checkpoint, n_samples, extractor, inception_weights, data_root, device, quiet, executor, slurm_partition)


app.command("run", help="Train or load each method, evaluate every length (gFID, rFID, KID, P/R, FLOPs, "
                        "alignment), print the table.")(run_cmd)
app.command("eval", help="Like run, but never trains: evaluates an existing (given, shipped or cached) checkpoint.")(run_cmd)


@app.command("bench")
def bench_cmd(names: Optional[list[str]] = typer.Argument(None, help="Benchmarks to run (default all): peak, dit-scaling, "
                                                                      "dit-gflops, features, latent-cache, memory, overhead, gpu."),
              out: Path = typer.Option(Path("results/bench"), "--out", "-o", help="Folder for one JSON per benchmark."),
              quick: bool = typer.Option(False, "--quick", help="Small sizes: checks the benchmarks run, figures are not meaningful."),
              threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's choice).")):
    """Measure the harness: matmul peak, DiT cost vs FLOPs, GFLOP/s, feature extraction, cache, memory, overhead."""
    from .bench import run_bench

    run_bench(names or None, out, quick=quick, threads=threads)


@app.command("flops")
def flops_cmd(method: str = typer.Option(..., "--method", "-m", help="Method name."),
              lengths: str = SWEEP_OPTS["lengths"], preset: str = PRESET, config: Optional[Path] = CONFIG,
              sets: Optional[list[str]] = SET):
    """Print GFLOPs per stage (fvcore convention: 1 multiply-add = 1 FLOP) and parameter counts per length."""
    from rich.console import Console
    from rich.table import Table

    from .metrics.flops import flops_rows
    from .model import build_bundle

    cfg = _config(preset, config, sets)
    ks = parse_lengths(lengths, cfg.tokenizer.n_tokens)
    bundle = build_bundle(cfg, method, num_classes=1000 if cfg.data.name == "imagenet" else 13)
    bundle.method.freeze()
    bundle.dits["joint"] = bundle.new_dit()
    s = cfg.sampler
    # Sampling cost depends only on whether guidance is on; a searched scale is known only per cell.
    w = s.cfg_scale if s.guidance == "fixed" else max(s.cfg_scales)
    rows = flops_rows(bundle, ks, s, w)
    table = Table(title=f"{method} on {preset}: GFLOPs per image (1 FMA = 1 FLOP, fvcore; attention counted)")
    cols = ["length", "dit_forward_gflops", "nfe", "sampling_gflops", "encoder_gflops", "decoder_gflops"]
    for c in cols + ["skipped ops (not counted)"]:
        table.add_column("K" if c == "length" else c)
    for r in rows:
        table.add_row(*[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols], str(r.get("skipped_ops", "")))
    Console(width=200).print(table)
    typer.echo("params: " + ", ".join(f"{k[7:]} {v / 1e6:.3f}M" for k, v in rows[0].items() if k.startswith("params_")))
    if s.guidance == "search" and w != 1.0:
        typer.echo(f"sampling_gflops count guidance on (both CFG branches for t in {list(s.cfg_interval)}); a cell "
                   f"whose searched scale is 1.0 samples with nfe = {s.steps - 1}")


@app.command("leaderboard")
def leaderboard_cmd(results: Path = RESULTS,
                    fmt: str = typer.Option("rich", "--format", "-f",
                                             help="rich (a terminal; markdown when piped), md, csv or html."),
                    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the table to this file.")):
    """One table per comparable group of records (same dataset, metric spec, sampler), best marked, Pareto summary."""
    from .report import leaderboard, render
    from .store import load_frame

    if not results.exists():
        raise UserError(f"results folder {results} does not exist; pass --results DIR holding vltbench records")
    df = load_frame(results)
    if df.empty:
        raise UserError(f"no valid records under {results}; run `vltbench run` first")
    tables = leaderboard(df)
    if out is not None:
        text = render(tables, "md" if fmt == "rich" else fmt)
        try:
            _writable_file(out, "--out").write_text(text)
        except OSError as e:
            raise _write_failed(out, "--out", e) from None
        typer.echo(str(out))
    else:
        _show_tables(tables, fmt)


@app.command("plot")
def plot_cmd(results: Path = RESULTS, out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: <results>/plots, beside the records).", callback=lambda ctx, out: out or __import__("vltbench.plots", fromlist=["default_out"]).default_out(ctx.params["results"]))):
    """Trade-off figures (PNG + SVG): gFID vs GFLOPs, rFID vs K, alignment vs K, sample grid."""
    from .plots import make_plots
    from .store import load_frame

    if not results.exists():
        raise UserError(f"results folder {results} does not exist; pass --results DIR holding vltbench records")
    df = load_frame(results)
    if df.empty:
        raise UserError(f"no valid records under {results}; run `vltbench run` first")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the plot folder ({e.strerror or e}); choose another with --out") from None
    try:
        paths = make_plots(df, out, results)
    except OSError as e:
        if e.filename is None or not str(e.filename).startswith(str(out)):
            raise
        raise _write_failed(Path(e.filename), "--out", e) from None
    for p in paths:
        typer.echo(str(p))


@app.command("check")
def check_cmd(baseline: Path = typer.Option(..., "--baseline", "-b", help="Baseline records: a results folder or one record file."),
              candidate: Path = typer.Option(RESULTS.default, "--candidate", help="Candidate results folder."),
              report: Optional[Path] = typer.Option(None, "--report", help="Write the machine-readable report (JSON) here."),
              min_effect: float = typer.Option(1.0, "--min-effect", help="Smallest FID change (absolute) that can count as a regression."),
              z: float = typer.Option(2.0, "--z", help="Noise multiple a change must exceed.")):
    """Regression check: refuse incomparable results, then flag changes beyond noise; exit 1 on a regression."""
    from .check import check
    from .store import load_frame

    for what, p in (("baseline", baseline), ("candidate", candidate)):
        if not p.exists():
            raise UserError(f"{what} {p} does not exist; pass an existing results folder or record file")
    if report is not None:
        _writable_file(report, "--report")
    base, cand = load_frame(baseline), load_frame(candidate)
    for what, df, p in (("baseline", base, baseline), ("candidate", cand, candidate)):
        if df.empty:
            raise UserError(f"{what} {p} holds no valid records")
    result = check(base, cand, min_effect={"gfid": min_effect, "rfid": min_effect}, z=z)
    typer.echo(str(result))
    if report is not None:
        from .atomic import atomic_write_text
        try:
            atomic_write_text(report, result.to_json())
        except OSError as e:
            raise _write_failed(report, "--report", e) from None
    raise typer.Exit(1 if result.failed else 0)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _given_value(param) -> str | None:
    """The raw text given for an option on the command line (click's messages do not repeat it)."""
    opts = getattr(param, "opts", None) or []
    args = sys.argv[1:]
    for i, a in enumerate(args):
        for o in opts:
            if a == o and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(o + "="):
                return a[len(o) + 1:]
    return None


def _close_process_group() -> None:
    """Tear a torchrun process group down before the interpreter exits: left to interpreter teardown,
    gloo's threads can abort a rank that finished its work ("terminate called without an active
    exception", SIGABRT, seen in CI). Not on failures: the process exits at once there."""
    dist = sys.modules.get("vltbench.dist")  # only if this run imported it (keeps `methods` fast)
    if dist is not None:
        dist.destroy()


def _app_naming_rank():
    """app(), but under torchrun an unexpected failure prints its traceback and one line naming the rank."""
    try:
        rv = app(standalone_mode=False)
        _close_process_group()
        return rv
    except Exception as e:
        if not _rank() or isinstance(e, UserError) or type(e).__module__.startswith(("typer", "click")):
            raise
        import traceback

        from .dist import describe_failure
        traceback.print_exc()
        print(f"error: {describe_failure(e)}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    """Entry point: every user mistake, ours or the option parser's, is one `error: ...` line."""
    try:  # typer >= 0.2x vendors click as typer._click; older typers use click itself
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover
        from click import exceptions as cx

    import warnings

    # a warning (e.g. a skipped corrupt record) is one line too, not "file:line: UserWarning:" + source
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {_one_line(message)}\n"
    try:
        rv = _app_naming_rank()
    except UserError as e:
        print(f"error: {_rank()}{_one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except cx.NoArgsIsHelpError as e:  # bare `vltbench`: the help (typer's rich help is printed already)
        if e.format_message().strip():
            print(e.format_message(), file=sys.stderr)
        sys.exit(e.exit_code)
    except cx.ClickException as e:
        # unknown option / command, a value of the wrong type or out of range: click names it
        ctx = getattr(e, "ctx", None)
        where = ctx.command_path if ctx is not None else "vltbench"
        msg = _one_line(e.format_message()).rstrip(".")
        if (given := _given_value(getattr(e, "param", None))) is not None and repr(given) not in msg:
            msg = f"{msg} (got {given!r})"
        print(f"error: {msg}; see `{where} --help`", file=sys.stderr)
        sys.exit(e.exit_code)
    except (typer.Abort, getattr(cx, "Abort", typer.Abort)):  # Ctrl-D / Ctrl-C at a prompt
        print("error: aborted", file=sys.stderr)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
