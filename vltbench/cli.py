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
        out[key.strip()] = yaml.safe_load(value)
    return out


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
    ds = load_data(cfg.data)
    _, path, timing = train_bundle(cfg, method, ds, resolve_device(cfg.device), out=out, lengths=ks)
    progress.log(" ".join(f"{k}={v:.1f}" for k, v in timing.items()))
    typer.echo(str(path))


def main() -> None:
    try:
        app()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
