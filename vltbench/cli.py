"""The `vltbench` command line (Typer). User mistakes end as one line on stderr, exit code 2.

The commands only map their options to the Python API (vltbench.api), which validates them: a
mistake is a UserError whose message is the `error:` line printed here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from vltbench import api
from vltbench.core import defaults, registry
from vltbench.core.config import load_config
from vltbench.core.errors import UserError

app = typer.Typer(name="vltbench", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark variable-length image tokenizers in latent diffusion: quality vs compute per token length.")

PRESET = typer.Option(defaults.PRESET, "--preset", "-p", help="Config preset: tiny (the default: real MNIST digits at 16 px, "
                      "a CPU-sized model; checkpoints shipped), small-rgb (a 32 px RGB folder of your own, --data-root; "
                      "no checkpoints: about 70 min of one CPU core per method's tokenizer), imagenet256 or "
                      "imagenet256-xl (paper scale, GPUs), lgm-official-xl (the imported official LGM release), "
                      "titok-official (imported One-D-Piece / TiTok).")
CONFIG = typer.Option(None, "--config", "-c", help="YAML file merged over the preset (same keys as vltbench/configs/tiny.yaml).")
SET = typer.Option(None, "--set", help="Override one config value, e.g. --set dit.steps=200 (repeatable).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars or log lines.")
DEVICE = typer.Option(None, "--device", help="auto (CUDA when present), cpu or cuda[:i]. Default: the config's device.")
RESULTS = typer.Option(defaults.RESULTS, "--results", "-r", help="Results folder (one JSON record per cell).")
VIEW = typer.Option(None, "--view", help="Which columns the terminal table shows: summary (the default: method, K, "
                    "seeds, gFID ± spread, CFG w, rFID, PSNR, GFLOPs/img, Pareto, the floor and ceiling rows and the "
                    "paired verdicts) or diagnostics (every other column: KID, P/R, class accuracies, alignment, "
                    "parameters, ...). md, csv and html always keep every column (docs/reading-results.md).")


def _root_datasets() -> str:
    """The registered datasets that read data.root, for the --data-root help."""
    return "/".join(n for n in registry.datasets.names() if registry.datasets.info(n)["needs_root"])


DATA_ROOT_HELP = f"Dataset folder for {_root_datasets()} datasets."


def _quiet(quiet: bool) -> None:
    """--quiet / -q on every command (those that print only their result have no log lines to hide)."""
    if quiet:
        from vltbench.core import progress
        progress.set_quiet(True)


@app.command("methods")
def methods_cmd(preset: str = PRESET, quiet: bool = QUIET):
    """List registered methods: name, family, description, maximum length."""
    _quiet(quiet)
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
              data_root: Optional[str] = typer.Option(None, help=DATA_ROOT_HELP),
              tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="An imported tokenizer checkpoint "
                                                       "(`vltbench import ...`): kept frozen, only the DiT(s) train on its "
                                                       "latents; evaluate the result with `vltbench eval --checkpoint`."),
              device: Optional[str] = DEVICE, quiet: bool = QUIET):
    """Train one method on a preset: tokenizer, latent cache, DiT(s); writes a checkpoint."""
    path = api.train(method, preset=preset, config=config, overrides=sets, generator=generator, lengths=lengths,
                     out=out, data_root=data_root, device=device, quiet=quiet, tokenizer=tokenizer)
    if _is_main():  # under torchrun rank 0 speaks for all
        typer.echo(str(path))


import_app = typer.Typer(no_args_is_help=True, help="Import checkpoints released by others as vltbench checkpoints.")
app.add_typer(import_app, name="import")


@import_app.command("lgm")
def import_lgm_cmd(tokenizer: Path = typer.Option(..., "--tokenizer", help="The official tokenizer.pt (huggingface.co/movinghoon/LGM)."),
                   generator: Optional[Path] = typer.Option(None, "--generator", help="The official xl.pth (LightningDiT-XL); "
                                                            "without it only the tokenizer is imported."),
                   latent_stats: Optional[Path] = typer.Option(None, "--latent-stats", help="latents_stats.pt of the dataset "
                                                               "movinghoon/ours2-d32 (needed with --generator)."),
                   ema: bool = typer.Option(True, "--ema/--no-ema", help="The EMA weights (default, as the official "
                                            "evaluation) or the raw training weights."),
                   out: Path = typer.Option(..., "--out", "-o", help="The vltbench checkpoint to write (.safetensors)."),
                   preset: str = typer.Option(defaults.IMPORT_PRESET, "--preset", "-p", help="Config the checkpoint is for "
                                              "(its sizes must match the files)."),
                   config: Optional[Path] = CONFIG, sets: Optional[list[str]] = SET, quiet: bool = QUIET):
    """Import the official LGM release (tokenizer.pt, xl.pth) into one vltbench merge checkpoint."""
    _quiet(quiet)
    path = api.import_lgm(tokenizer, generator, out, latent_stats=latent_stats, ema=ema, preset=preset,
                          config=config, overrides=sets)
    extra = "".join(f" --config {config}" if config else "") + "".join(f" --set {s}" for s in sets or [])
    typer.echo(f"{path}: official LGM release imported (method merge, preset {preset}); evaluate it with "
               f"`vltbench eval --method merge --checkpoint {path} --preset {preset}{extra} --lengths K,... --data-root DIR`")


WEIGHTS = typer.Option(..., "--weights", help="The release's weights: pytorch_model.bin (read with "
                       "torch.load(weights_only=True)) or model.safetensors.")
PIXEL = typer.Option(None, "--pixel-decoder", help="maskgit-vqgan-imagenet-f16-256.bin, only for weights without "
                     "their fine-tuned pixel_decoder.*")
OFFICIAL = typer.Option(None, "--official-config", help="The release's config.json (or the repository's YAML): "
                        "its values are checked against the weights.")
TITOK_OUT = typer.Option(..., "--out", "-o", help="The vltbench checkpoint to write (.safetensors; its config "
                         "beside it as .yaml).")
TITOK_PRESET = typer.Option("titok-official", "--preset", "-p", help="Config the checkpoint is for (sizes come from "
                            "the weights).")


def _titok_import_command(family: str, doc: str) -> None:
    """Register `vltbench import <family>`: the TiTok-family releases take the same options."""
    def command(weights: Path = WEIGHTS, pixel_decoder: Optional[Path] = PIXEL,
                official_config: Optional[Path] = OFFICIAL, out: Path = TITOK_OUT,
                preset: str = TITOK_PRESET, config: Optional[Path] = CONFIG,
                sets: Optional[list[str]] = SET, quiet: bool = QUIET):
        from vltbench.models.official_titok import FAMILIES, config_path

        _quiet(quiet)
        path = api.import_titok(family, weights, out, pixel_decoder=pixel_decoder, official_config=official_config,
                                preset=preset, config=config, overrides=sets)
        typer.echo(f"{path}: {FAMILIES[family]['kind']} imported (method tail-drop, tokenizer only; config "
                   f"{config_path(path)}); train a DiT on its latents with `vltbench train --method tail-drop "
                   f"--preset {preset} --config {config_path(path)}` (then evaluate with --checkpoint)")

    command.__doc__ = doc  # the command's help
    import_app.command(family)(command)


_titok_import_command("one-d-piece", "Import a One-D-Piece release (turing-motors/One-D-Piece-{S,B,L}-256): decodes "
                      "any prefix K in 1..256.")
_titok_import_command("titok", "Import a TiTok release (yucornetto/tokenizer_titok_{l32,b64,s128}_imagenet): one "
                      "fixed K per checkpoint.")


@app.command("eval-tokenizer")
def eval_tokenizer_cmd(method: str = typer.Option("tail-drop", "--method", "-m", help="The checkpoint's method."),
                       checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="The checkpoint (e.g. one "
                                                                 "`vltbench import one-d-piece` wrote); default: the "
                                                                 "shipped / cached one."),
                       lengths: str = typer.Option(..., "--lengths", "-k", help="K values, e.g. 1,8,32,256."),
                       preset: str = PRESET, config: Optional[Path] = CONFIG, sets: Optional[list[str]] = SET,
                       results: Path = RESULTS, quiet: bool = QUIET):
    """Tokenizer only, no generator: rFID / rKID / PSNR / SSIM and encoder / decoder GFLOPs per K; records, a
    table and the rFID-vs-K plot under <results>/tokenizer_only (docs/released-tokenizers.md)."""
    from vltbench.core.config import load_config
    from vltbench.evaluation.tokenizer_only import FOLDER, evaluate_tokenizer

    _quiet(quiet)
    cfg = load_config(preset, config, api.parse_sets(sets))
    ks = api.parse_lengths(lengths, cfg.tokenizer.n_tokens, cfg.preset)
    recs = evaluate_tokenizer(cfg, method, checkpoint, ks, results)
    for r in recs:
        m = r["metrics"]
        typer.echo(f"{r['label']} K={r['length']}: {r['metric_label']} {m['rfid']:.3f}, PSNR {m['psnr']:.2f}, "
                   f"SSIM {m['ssim']:.3f}, decoder {r['compute']['decoder_gflops']:.3g} GFLOPs")
    typer.echo(f"records, table.md and rfid_vs_k.png in {results / FOLDER}")


def _is_main() -> bool:
    from vltbench.core.dist import is_main
    return is_main()


def _rank() -> str:
    """'rank R/W: ' under torchrun with several processes (so a failure names its rank), else ''."""
    import os
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return ""
    from vltbench.core.dist import prefix
    return prefix()


def _print_leaderboard(results: Path, view: str | None) -> None:
    try:
        tables = api.leaderboard(results)
    except UserError:  # e.g. every cell is being computed by another process
        typer.echo(f"no records under {results}")
        return
    _show_tables(tables, defaults.TABLE_FORMAT, view)


def _check_view(view: str | None, fmt: str) -> str:
    """--view picks the terminal table's columns; the other formats are the full record of every column."""
    from vltbench.reporting.terminal import check_view

    if view is not None and fmt != "rich":
        raise UserError(f"--view {view} chooses the columns of the terminal table (--format rich); {fmt} keeps "
                        "every column: drop --view")
    return check_view(view or "summary")


def _show_tables(tables, fmt: str, view: str | None) -> None:
    """rich: the view's tables, in a terminal and piped alike (piped: no colour, $COLUMNS or 80
    characters wide); md / csv / html: every column."""
    from vltbench.reporting.formats import render
    from vltbench.reporting.terminal import print_tables

    view = _check_view(view, fmt)
    if fmt == "rich":
        print_tables(tables, view=view)
    else:
        typer.echo(render(tables, fmt))


def _extractor_list() -> str:
    """Every registered feature extractor with its summary, for the --extractor help."""
    items = []
    for name in registry.extractors.names():
        summary = registry.extractors.info(name)["summary"]
        items.append(f"{name} ({summary})" if summary else name)
    return ", ".join(items[:-1]) + (" or " if len(items) > 1 else "") + items[-1]


SWEEP_OPTS = dict(
    method=typer.Option(None, "--method", "-m", help="Method name, or 'all' (see `vltbench methods`)."),
    methods=typer.Option(None, "--methods", help="Several methods, comma-separated."),
    lengths=typer.Option(..., "--lengths", "-l", help="Token lengths K to evaluate, comma-separated, each in 1..N."),
    seeds=typer.Option(",".join(map(str, defaults.SEEDS)), "--seeds",
                       help="Sampling seeds per cell, comma-separated; tables show mean +/- spread."),
    generator=typer.Option(None, "--generator", help="joint (one DiT for all lengths, default) or separate (one per length)."),
    overwrite=typer.Option(False, "--overwrite", help="Recompute cells that already have a record."),
    checkpoint=typer.Option(None, "--checkpoint", help="Use this checkpoint file instead of the shipped/cached one."),
    n_samples=typer.Option(None, "--n-samples", help="Generated samples (and reconstructions) per cell."),
    extractor=typer.Option(None, "--extractor", help="Feature extractor. Default: the config's eval.extractor, auto "
                           "in every preset: mnist-cnn on mnist (the tiny preset), inception on any other dataset. "
                           f"{_extractor_list()}. gfid / rfid hold this extractor's Fréchet distance."),
    inception_weights=typer.Option(None, "--inception-weights", help="Path to the FID Inception weights (never downloaded)."),
    data_root=typer.Option(None, "--data-root", help=DATA_ROOT_HELP),
    executor=typer.Option(defaults.EXECUTOR, "--executor", help="local (this process; under torchrun, all its ranks), slurm "
                          "(one Slurm job array task per missing cell, via submitit; needs --slurm-partition and "
                          "pip install 'vltbench\\[slurm]'; resources: --set slurm.KEY=VALUE) or submitit-local "
                          "(the same job array as local processes)."),
    slurm_partition=typer.Option(None, "--slurm-partition", help="Slurm partition for --executor slurm."),
    save_samples=typer.Option(False, "--save-samples", help="Write each computed cell's guided samples (the gFID "
                              "set) as an ADM-format .npz beside its record (arr_0 uint8 NHWC, arr_1 labels; "
                              "n-samples x H x W x 3 bytes: 50k at 256 px = 9.8 GB). Off by default."),
    dry_run=typer.Option(False, "--dry-run", help="Plan only: list the cells, which are done, and each cell's "
                         "estimated GFLOPs and time; trains, samples and writes nothing."),
    throughput=typer.Option(None, "--throughput", help="GFLOP/s the --dry-run time estimates assume (default: "
                            "a matmul measured on this machine, an optimistic bound)."),
)


def run_cmd(ctx: typer.Context, method: Optional[str] = SWEEP_OPTS["method"], methods: Optional[str] = SWEEP_OPTS["methods"],
            lengths: str = SWEEP_OPTS["lengths"], preset: str = PRESET, config: Optional[Path] = CONFIG,
            sets: Optional[list[str]] = SET, results: Path = RESULTS, seeds: str = SWEEP_OPTS["seeds"],
            generator: Optional[str] = SWEEP_OPTS["generator"], overwrite: bool = SWEEP_OPTS["overwrite"],
            checkpoint: Optional[str] = SWEEP_OPTS["checkpoint"], n_samples: Optional[int] = SWEEP_OPTS["n_samples"],
            extractor: Optional[str] = SWEEP_OPTS["extractor"], inception_weights: Optional[str] = SWEEP_OPTS["inception_weights"],
            data_root: Optional[str] = SWEEP_OPTS["data_root"], device: Optional[str] = DEVICE, quiet: bool = QUIET,
            executor: str = SWEEP_OPTS["executor"], slurm_partition: Optional[str] = SWEEP_OPTS["slurm_partition"],
            save_samples: bool = SWEEP_OPTS["save_samples"], dry_run: bool = SWEEP_OPTS["dry_run"],
            throughput: Optional[float] = SWEEP_OPTS["throughput"], view: Optional[str] = VIEW):
    # one implementation for both commands: `run` may train, `eval` never does
    _check_view(view, defaults.TABLE_FORMAT)  # a wrong --view fails now, not after the sweep
    df = api.evaluate([method, methods], lengths, train=ctx.info_name == "run", preset=preset, config=config,
                      overrides=sets, seeds=seeds, results=results, executor=executor, slurm_partition=slurm_partition,
                      overwrite=overwrite, checkpoint=checkpoint, generator=generator, n_samples=n_samples,
                      extractor=extractor, inception_weights=inception_weights, data_root=data_root, device=device,
                      quiet=quiet, save_samples=save_samples, dry_run=dry_run, throughput=throughput)
    if dry_run:
        from vltbench.evaluation.dry_run import print_plan
        print_plan(df)
    elif _is_main():
        _print_leaderboard(results, view)


app.command("run", help="Train or load each method, evaluate every length (gFID, rFID, KID, P/R, FLOPs, "
                        "alignment), print the table.")(run_cmd)
app.command("eval", help="Like run, but never trains: evaluates an existing (given, shipped or cached) checkpoint.")(run_cmd)


@app.command("score")
def score_cmd(samples: Path = typer.Argument(..., help="Samples: an ADM-format .npz (arr_0 uint8 NHWC, arr_1 "
                                             "labels optional) or a folder of images, all the same size."),
              reference: str = typer.Option("dataset", "--reference", help="dataset (the configured dataset's test "
                                            "reference, as a run), an ADM reference batch .npz, or a folder of "
                                            "real images (center-cropped to data.image_size)."),
              name: Optional[str] = typer.Option(None, "--name", help="Name in tables (default: the file stem)."),
              preset: str = PRESET, config: Optional[Path] = CONFIG, sets: Optional[list[str]] = SET,
              extractor: Optional[str] = SWEEP_OPTS["extractor"],
              inception_weights: Optional[str] = SWEEP_OPTS["inception_weights"],
              data_root: Optional[str] = SWEEP_OPTS["data_root"],
              results: Path = typer.Option(Path("results/scores"), "--results", help="Where the record is written."),
              seed: int = typer.Option(0, "--seed", help="Seed of KID's subsets and the bootstrap."),
              device: Optional[str] = DEVICE, quiet: bool = QUIET):
    """Score external samples with vltbench's metrics; writes a record labelled external and prints it."""
    rec = api.score(samples, reference=reference, name=name, preset=preset, config=config, overrides=sets,
                    extractor=extractor, inception_weights=inception_weights, data_root=data_root, results=results,
                    seed=seed, device=device, quiet=quiet)
    label = rec["identity"]["metric_spec"]["label"]
    m = rec["metrics"]
    typer.echo(f"{rec['identity']['method']} [external], {rec['identity']['samples']['count']} samples: "
               + ", ".join(f"{k.replace('gfid', 'g' + label)} {v:.6g}" for k, v in m.items()
                           if v is not None and not k.endswith("_std")))
    typer.echo(f"record: {rec['path']}")


@app.command("flops")
def flops_cmd(method: str = typer.Option(..., "--method", "-m", help="Method name."),
              lengths: str = SWEEP_OPTS["lengths"], preset: str = PRESET, config: Optional[Path] = CONFIG,
              sets: Optional[list[str]] = SET,
              data_root: Optional[str] = typer.Option(None, "--data-root", help="Dataset folder for folder/imagenet "
                                                      "datasets: its class folders give the class count."),
              num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Class count (the DiT's label "
                                                        "embedding) of a folder or imagenet dataset whose data is not "
                                                        "here. Default: from the dataset (embedded 13, digits 10, the "
                                                        "class folders under --data-root; imagenet without it 1000)."),
              quiet: bool = QUIET):
    """Print GFLOPs per stage (fvcore convention: 1 multiply-add = 1 FLOP) and parameter counts per length."""
    _quiet(quiet)
    from rich.console import Console
    from rich.table import Table

    df = api.flops(method, lengths, preset=preset, config=config, overrides=sets, data_root=data_root,
                   num_classes=num_classes)
    table = Table(title=df.attrs["title"])
    cols = ["length", "dit_forward_gflops", "nfe", "sampling_gflops", "encoder_gflops", "decoder_gflops"]
    for c in cols + ["skipped ops (not counted)"]:
        table.add_column("K" if c == "length" else c)
    for r in df.to_dict("records"):
        table.add_row(*[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols], str(r.get("skipped_ops", "")))
    Console(width=200).print(table)
    first = df.iloc[0]
    typer.echo("params: " + ", ".join(f"{k[7:]} {first[k] / 1e6:.3f}M" for k in df.columns if k.startswith("params_")))
    for note in df.attrs["notes"]:
        typer.echo(note)


@app.command("leaderboard")
def leaderboard_cmd(results: Path = RESULTS,
                    fmt: str = typer.Option(defaults.TABLE_FORMAT, "--format", "-f",
                                             help="rich (the --view's tables; piped too, without colour), md, "
                                             "csv or html (these three: every column)."),
                    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the table to this file "
                                                       "(markdown unless --format says otherwise)."),
                    view: Optional[str] = VIEW, quiet: bool = QUIET):
    """One table per comparable group of records (same dataset, metric spec, sampler), best marked, Pareto summary."""
    _quiet(quiet)
    from vltbench.reporting.formats import check_format, render

    if fmt != "rich":
        check_format(fmt)  # before --view is checked against it
    _check_view(view, "--out's md" if out is not None and fmt == "rich" else fmt)
    tables = api.leaderboard(results)
    if out is not None:
        text = render(tables, "md" if fmt == "rich" else fmt)
        try:
            api.writable_file(out, "--out").write_text(text)
        except OSError as e:
            raise api.write_failed(out, "--out", e) from None
        typer.echo(str(out))
    else:
        _show_tables(tables, fmt, view)


@app.command("plot")
def plot_cmd(results: Path = RESULTS,
             out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: <results>/plots, "
                                                "beside the records)."), quiet: bool = QUIET):
    """Trade-off figures (PNG + SVG): gFID vs GFLOPs, rFID vs K, alignment vs K, sample grid."""
    _quiet(quiet)
    for p in api.plot(results, out):
        typer.echo(str(p))


@app.command("report")
def report_cmd(results: Path = RESULTS,
               out: Optional[Path] = typer.Option(None, "--out", "-o", help="The HTML file (default: "
                                                  "<results>/report.html, beside the records)."), quiet: bool = QUIET):
    """One self-contained HTML page: leaderboards, figures, sample strips across K, provenance, loss curves."""
    _quiet(quiet)
    typer.echo(str(api.report(results, out)))


CHECK_HELP = """Regression check: refuse incomparable results, then flag changes beyond noise.

Compares the candidate's cells with the baseline's of the same (method, generator, K), paired on
(training seed, sampling seed); cells or seed pairs only the baseline has are listed as not checked.
Exit codes: 0 passed, 1 failed (a regression, or with --require-all a baseline cell not checked),
2 refused (not comparable, nothing in common, a corrupt record, a bad option)."""


@app.command("check", help=CHECK_HELP)
def check_cmd(baseline: Path = typer.Option(..., "--baseline", "-b", help="Baseline records: a results folder or one record file."),
              candidate: Path = typer.Option(RESULTS.default, "--candidate", help="Candidate results folder."),
              report: Optional[Path] = typer.Option(None, "--report", help="Write the machine-readable report (JSON) here."),
              metrics: Optional[str] = typer.Option(None, "--metrics", help="Metrics to check, comma-separated "
                                                    "(default: every ranked metric the baseline carries: gfid, rfid, "
                                                    "class_acc, kid, precision, ...)."),
              lengths: Optional[str] = typer.Option(None, "--lengths", "-l", help="Check only these K, comma-separated."),
              method_map: Optional[list[str]] = typer.Option(None, "--method-map", help="NEW=BASELINE: hold candidate "
                                                             "method NEW to the baseline's BASELINE (repeatable)."),
              require_all: bool = typer.Option(False, "--require-all", help="Fail when a baseline cell (method, K, "
                                               "seed pair, metric) has no candidate to check."),
              min_effect: Optional[list[str]] = typer.Option(None, "--min-effect", help="Smallest change that can count "
                                                             "as a regression: METRIC=VALUE (repeatable), or one VALUE "
                                                             "for every metric. Default: each metric's declared one "
                                                             "(gfid / rfid 1.0, class_acc 0.02, kid 0.002, ...)."),
              z: float = typer.Option(defaults.Z, "--z", help="Noise multiple a change must exceed."),
              quiet: bool = QUIET):
    _quiet(quiet)
    result = api.check(baseline, candidate, report=report, min_effect=_min_effect(min_effect), z=z, metrics=metrics,
                       lengths=lengths, method_map=method_map, require_all=require_all)
    typer.echo(str(result))
    raise typer.Exit(1 if result.failed else 0)


def _min_effect(items: list[str] | None) -> float | dict | None:
    """['gfid=0.5', 'class_acc=0.05'] -> {metric: value}; ['0.5'] -> 0.5 (every metric)."""
    if not items:
        return None
    out: dict = {}
    for item in (x.strip() for i in items for x in i.split(",") if x.strip()):
        key, eq, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is None or number < 0 or number != number or (eq and not key.strip()):
            raise UserError(f"--min-effect {item!r}: give METRIC=VALUE (e.g. --min-effect class_acc=0.05) or one "
                            "non-negative number for every metric")
        if not eq:
            if len(items) > 1 or out:
                raise UserError("--min-effect: one bare VALUE applies to every metric; give the others as METRIC=VALUE")
            return number
        out[key.strip()] = number
    return out


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
    dist = sys.modules.get("vltbench.core.dist")  # only if this run imported it (keeps `methods` fast)
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

        from vltbench.core.dist import describe_failure
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
