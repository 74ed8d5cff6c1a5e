"""The user's values, parsed and validated once for the Python API (vltbench.api) and the CLI.

Every mistake is a `vltbench.core.errors.UserError` whose one-line message is what the CLI prints
after `error: `; messages name the CLI option (`--lengths`, `--seeds`, ...). Also here: the config a
call resolves, the records a reporting call reads, and the write errors every command turns into one
line. Nothing heavy (torch, pandas) is imported until a function runs.
"""

from __future__ import annotations

import errno
import numbers
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

IMAGENET_CLASSES = 1000  # ImageNet-1k: the class count `flops` assumes for data.name=imagenet without data.root


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


def parse_overrides(overrides: Mapping[str, Any] | Iterable[str] | None) -> dict:
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
    given = parse_overrides(overrides)
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
    for key, value in parse_overrides(overrides).items():
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


def check_positive(value: int | None, option: str, example: str) -> None:
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


def set_quiet(quiet: bool | None) -> None:
    if quiet is not None:
        from vltbench.core import progress
        progress.set_quiet(quiet)


def load_records(results: str | Path | pd.DataFrame, what: str = "results", option: str = "--results") -> pd.DataFrame:
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
def write_errors():
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

def parse_names(value: str | Sequence[str] | None, option: str) -> tuple[str, ...] | None:
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


def strict_frame(path: str | Path, what: str) -> pd.DataFrame:
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
