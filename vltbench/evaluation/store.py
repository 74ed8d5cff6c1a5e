"""Result store: one immutable JSON record per cell, at `<root>/<method>/<cell_id>.json`.

A cell is keyed by the hash of its identity (method, checkpoint, length, sampler, dataset,
metric spec, seed), so a resumed sweep computes only missing cells and never rewrites one.
Readers are forgiving: a corrupt, hand-edited or too-new file is reported and skipped. A cell counts
as done only when its record parses and validates: a corrupt one is reported, moved aside into
`<root>/.corrupt/` (never deleted) and the cell computed again. `read_record` is the strict reader
(UserError for a corrupt record), for callers that must not skip one (a baseline).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from vltbench.core import locks
from vltbench.core.atomic import PROBE_PREFIX, atomic_path, remove_leftovers
from vltbench.core.errors import UserError
from vltbench.core.hashing import canonical_json, hash_obj
from vltbench.core.paths import local, portable_strings

SCHEMA_VERSION = 1

# version -> function upgrading a record of that version to version + 1 (mteb-style).
# Version 1 is the first schema, so there is nothing to migrate yet.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}

REQUIRED = ("schema_version", "cell_id", "identity", "metrics")
SECTIONS = ("metrics", "unavailable", "compute", "alignment", "timing", "artifacts", "provenance")
REQUIRED_IDENTITY = ("method", "length", "seed", "sampler", "dataset", "metric_spec")


def cell_id(identity: dict) -> str:
    return hash_obj(identity)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def provenance(device: str, world_size: int) -> dict:
    from vltbench.core import __version__

    return {
        "vltbench_version": __version__,
        "git_sha": _git_sha(),
        "python": sys.version.split()[0],
        **{k: _version(d) for k, d in [("torch", "torch"), ("torch_fidelity", "torch-fidelity"),
                                         ("fvcore", "fvcore"), ("numpy", "numpy")]},
        "device": device,
        "world_size": world_size,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


_provenance = provenance  # build_record's keyword shadows the name


def build_record(identity: dict, metrics: dict, *, provenance: dict | None = None, **sections: Any) -> dict:
    """A complete record: schema version and cell id filled in, other sections (unavailable,
    compute, alignment, timing, artifacts, notes, config) passed through, defaulting to empty."""
    rec = {"schema_version": SCHEMA_VERSION, "cell_id": cell_id(identity), "identity": identity,
           "metrics": metrics}
    for key in ("unavailable", "compute", "alignment", "timing", "artifacts", "guidance", "subsets"):
        rec[key] = sections.pop(key, None) or {}
    for key in ("family", "alignment_representation", "origin", "imported"):  # absent in older records
        if key in sections:
            rec[key] = sections.pop(key)
    rec["notes"] = list(sections.pop("notes", None) or [])
    rec["provenance"] = provenance if provenance is not None else _provenance("cpu", 1)
    rec["config"] = sections.pop("config", None) or {}
    if sections:
        raise TypeError(f"unknown record sections: {sorted(sections)}")
    return rec


def validate(rec: Any) -> dict:
    """Return the record upgraded to SCHEMA_VERSION, or raise ValueError saying why it is unusable."""
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    version = rec.get("schema_version")
    if not isinstance(version, int):
        raise ValueError("no integer schema_version")
    if version > SCHEMA_VERSION:
        raise ValueError(f"schema_version {version} is newer than this vltbench reads ({SCHEMA_VERSION}); "
                         "upgrade vltbench")
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise ValueError(f"no migration from schema_version {version}")
        rec = MIGRATIONS[version](rec)
        version = rec["schema_version"]
    missing = [k for k in REQUIRED if k not in rec]
    ident = rec.get("identity")
    if isinstance(ident, dict):
        missing += [f"identity.{k}" for k in REQUIRED_IDENTITY if k not in ident]
    else:
        missing.append("identity (object)")
    if missing:
        raise ValueError(f"missing fields: {', '.join(missing)}")
    if bad := [k for k in SECTIONS if rec.get(k) is not None and not isinstance(rec[k], dict)]:
        raise ValueError(f"not JSON objects: {', '.join(bad)}")
    if cell_id(ident) != rec["cell_id"]:
        # The file name / id no longer matches its content: edited by hand, do not trust it.
        raise ValueError("cell_id does not match the hash of identity (was the file edited?)")
    return rec


def _problem(path: Path) -> tuple[dict | None, str | None]:
    """(record, None) for a valid record file, else (None, why it is unusable)."""
    try:
        return validate(json.loads(path.read_text())), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable JSON: {e}"
    except ValueError as e:
        return None, str(e)


def read_record(path: str | Path) -> dict:
    """The validated record in `path`; a UserError naming the file and what is wrong with it otherwise
    (the strict reader, e.g. for a baseline, where a skipped record would hide a regression)."""
    path = Path(path)
    rec, why = _problem(path)
    if rec is None:
        raise UserError(f"record {path} is corrupt ({' '.join(why.split())}); restore it or remove it and "
                        "recompute the cell")
    return rec


def _newer(why: str | None) -> bool:
    return why is not None and "newer than this vltbench" in why


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: os.umask can only be read by setting it


class ResultStore:
    """Records under a folder; `root` may also be one record file (read-only, for --baseline)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.skipped: list[tuple[Path, str]] = []  # (file, reason) from the last scan

    # -- paths ---------------------------------------------------------------
    def path_for(self, record_or_method: dict | str, cid: str | None = None) -> Path:
        if isinstance(record_or_method, dict):
            return self.root / record_or_method["identity"]["method"] / f"{record_or_method['cell_id']}.json"
        return self.root / record_or_method / f"{cid}.json"

    def _lock_path(self, cid: str) -> Path:
        return self.root / ".locks" / f"{cid}.lock"

    def probe_name(self) -> str:
        """A write probe's name: host, pid and a random part, so processes with equal pids (containers,
        other hosts) sharing the folder never collide."""
        host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname())[:64]
        return f"{PROBE_PREFIX}{host}-{os.getpid()}-{secrets.token_hex(4)}"

    def ensure_writable(self) -> None:
        """Raise UserError now, before any work, if records cannot be written here (the sweep calls it
        before it computes a cell, through claim(), not after)."""
        if self.root.is_file():
            raise UserError(f"results folder {self.root} is a file (a single record is read-only); "
                            "choose a folder with --results")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / self.probe_name()
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                try:  # held while it exists: a cleaner (remove_leftovers) leaves a live probe alone
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    pass  # locks unsupported or the instant a cleaner looks at it: only a probe
                os.write(fd, b"probe\n")
            finally:
                probe.unlink(missing_ok=True)
                os.close(fd)
        except OSError as e:
            raise UserError(f"results folder {self.root} is not writable: {e.strerror or e}; "
                            "choose another with --results") from None

    def tidy(self) -> list[Path]:
        """Remove what killed runs left here: temp files, lock files and write probes no live process
        holds, and sample images (grids, --save-samples .npz) whose record was never written (their cell's lock taken first)."""
        removed = remove_leftovers(self.root) if self.root.is_dir() else []
        found = [(p, suffix) for suffix in (".samples.png", ".samples.npz")
                 for p in (self.root.glob(f"*/*{suffix}") if self.root.is_dir() else [])]
        for png, suffix in found:
            cid = png.name[: -len(suffix)]
            if png.parent.name.startswith(".") or png.with_name(f"{cid}.json").exists():
                continue
            lock = self._lock_path(cid)
            lock.parent.mkdir(exist_ok=True)
            with locks.hold(lock) as mine:
                if mine and not png.with_name(f"{cid}.json").exists():
                    png.unlink(missing_ok=True)
                    removed.append(png)
        return removed

    # -- writing -------------------------------------------------------------
    def _candidates(self, cid: str) -> list[Path]:
        if self.root.is_file():
            return [self.root] if self.root.stem == cid else []
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob(f"*/{cid}.json") if not p.parent.name.startswith(".")]

    def exists(self, cid: str) -> bool:
        """Whether cell `cid` is done: a record of it that parses and validates (or one written by a
        newer vltbench, which this one leaves alone). A corrupt one does not count (see quarantine)."""
        for p in self._candidates(cid):
            rec, why = _problem(p)
            if (rec is not None and rec["cell_id"] == cid) or _newer(why):
                return True
        return False

    def quarantine(self, cid: str) -> list[Path]:
        """Move the corrupt records of cell `cid` to <root>/.corrupt/<method>/ (never deleted), each with
        a warning saying why; the caller holds the cell's claim and computes it again. Returns the new paths."""
        moved = []
        for p in self._candidates(cid):
            rec, why = _problem(p)
            if rec is not None and rec["cell_id"] != cid:
                why = f"it holds cell {rec['cell_id']}, not {cid}"
            elif rec is not None or _newer(why):
                continue
            dest = self.root / ".corrupt" / p.parent.name / f"{p.name}.{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
            moved.append(dest)
            warnings.warn(f"record {p} is corrupt ({' '.join(why.split())}); moved to {dest}, computing it again",
                          stacklevel=2)
        return moved

    def write(self, record: dict, overwrite: bool = False, artifacts: dict[str, bytes | Path] | None = None) -> Path:
        """Write atomically (temp + fsync + rename); a finished cell is never rewritten unless
        overwrite=True. Concurrent writers of one cell must hold `claim(cell_id)`.

        artifacts: {file name: bytes, or the Path of a finished temp file in the record's folder, moved}
        written beside the record (e.g. the sample grid), with the
        record's permissions: every temp file is complete and synced first, then the artifacts are
        renamed into place, then the record; on any failure nothing new is left behind. A full disk or
        any other OSError is one UserError."""
        record = validate(record)  # ValueError here is a harness bug, not a user mistake
        if self.root.is_file():
            raise UserError(f"results folder {self.root} is a file (a single record is read-only); "
                            "choose a folder with --results")
        path = self.path_for(record)
        # no machine path in a record (vltbench.core.paths.portable): it means the same on every machine
        record = {**record, "artifacts": portable_strings(record["artifacts"], base=path.parent),
                  "config": portable_strings(record["config"])}
        if path.exists() and not overwrite:
            raise FileExistsError(f"record {path} already exists; finished cells are immutable")
        text = json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n"
        mode = 0o666 & ~_UMASK  # mkstemp makes 0600; records and their images are shared like any file
        placed: list[Path] = []
        try:
            # Temp files of this cell (record, artifacts) left by a killed writer: nobody holds them
            for stale in path.parent.glob(f".{record['cell_id']}.*.tmp"):
                locks.remove_if_free(stale)
            with atomic_path(path) as tmp:
                tmp.write_text(text)
                os.chmod(tmp, mode)
                for name, data in (artifacts or {}).items():
                    if isinstance(data, Path):  # a finished, synced temp file (e.g. a samples .npz): moved
                        os.chmod(data, mode)
                        os.replace(data, path.parent / name)
                    else:
                        with atomic_path(path.parent / name) as atmp:
                            atmp.write_bytes(data)
                            os.chmod(atmp, mode)
                    placed.append(path.parent / name)
        except OSError as e:
            if not path.exists():  # no record: no image without its record (an overwritten one keeps the new image)
                for p in placed:
                    p.unlink(missing_ok=True)
            raise UserError(f"results folder {self.root} is not writable: the record of cell {record['cell_id']} "
                            f"could not be written ({e.strerror or e}); free space or choose another folder with "
                            "--results") from None
        return path

    def artifact_path(self, record: dict, name: str) -> Path:
        """Where an artifact named in record['artifacts'] lives: beside the record (folder created)."""
        folder = self.path_for(record).parent
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    @contextmanager
    def claim(self, cid: str) -> Iterator[bool]:
        """Per-cell lock (vltbench.core.locks: flock, released by the OS when its holder dies, on any host).
        Yields True when this process owns the cell, False when a live process holds it (the caller
        skips the cell and says so). A lock file left by a dead holder is free: it is simply taken."""
        self.ensure_writable()
        lock = self._lock_path(cid)
        lock.parent.mkdir(exist_ok=True)
        with locks.hold(lock) as owned:
            yield owned

    # -- reading -------------------------------------------------------------
    def files(self, cell_ids: Iterable[str] | None = None) -> list[Path]:
        """The record files here; with cell_ids, only those of these cells."""
        if cell_ids is not None:
            return sorted({p for cid in cell_ids for p in self._candidates(cid)})
        if self.root.is_file():
            return [self.root]
        if not self.root.is_dir():
            return []
        # Hidden names are temp files (.x.json.*.tmp) and the lock folder.
        return sorted(p for p in self.root.glob("*/*.json")
                      if not p.name.startswith(".") and not p.parent.name.startswith("."))

    def entries(self, cell_ids: Iterable[str] | None = None) -> Iterator[tuple[Path, dict]]:
        """(path, record) for each valid record (of cell_ids only, if given); problems go to
        self.skipped and a warning."""
        self.skipped = []
        for path in self.files(cell_ids):
            rec, why = _problem(path)
            if rec is None:
                self._skip(path, why)
                continue
            yield path, rec

    def records(self) -> Iterator[dict]:
        for _, rec in self.entries():
            yield rec

    def _skip(self, path: Path, reason: str) -> None:
        self.skipped.append((path, reason))
        warnings.warn(f"skipping result record {path}: {reason}", stacklevel=3)


# -- flat table ----------------------------------------------------------------
def comparable_key(identity: dict) -> str:
    """Records with the same key were measured the same way and may share a table."""
    return hash_obj({k: identity.get(k) for k in ("dataset", "metric_spec", "sampler")})


def _num(v: Any) -> float | None:
    # None stays None (-> NaN): an unavailable metric is never 0.
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def measurements(rec: dict) -> dict[str, float | None]:
    """Numeric columns: metrics as named, compute (params -> params_<part>), alignment as align_<name>."""
    out = {k: _num(v) for k, v in (rec.get("metrics") or {}).items()}
    for k, v in (rec.get("compute") or {}).items():
        if isinstance(v, dict) and k == "params":
            out.update({f"params_{n}": _num(x) for n, x in v.items()})
        elif not isinstance(v, (dict, list)):
            out[k] = _num(v)
    out.update({f"align_{k}": _num(v) for k, v in (rec.get("alignment") or {}).items()})
    return out


def guidance_protocol(sampler: dict) -> tuple[str | None, dict]:
    """(protocol, guidance spec) of a record's sampler identity: "search" or "fixed" (a fixed spec's
    "scale" filled in). Records from before the protocol existed carry sampler.cfg_scale: one fixed scale."""
    spec = dict(sampler["guidance"]) if isinstance(sampler.get("guidance"), dict) else {}
    protocol = spec.get("protocol") or ("fixed" if "cfg_scale" in sampler else None)
    if protocol == "fixed" and spec.get("scale") is None:
        spec["scale"] = sampler.get("cfg_scale")
    return protocol, spec


def _guidance(rec: dict, sampler: dict) -> tuple[str | None, float | None]:
    """(protocol, chosen scale): from record["guidance"], else the sampler's guidance spec."""
    chosen = rec.get("guidance") if isinstance(rec.get("guidance"), dict) else {}
    protocol, spec = guidance_protocol(sampler)
    scale = chosen.get("scale") if chosen.get("scale") is not None else spec.get("scale")
    return chosen.get("protocol") or protocol, _num(scale)


# The parts of a record's config that determine a checkpoint's training, the seed aside: records whose
# checkpoints differ only by the training seed are seeds of one recipe (one leaderboard row).
RECIPE_PARTS = ("data", "tokenizer", "dit", "lengths", "generator", "methods")


def recipe_hash(rec: dict) -> str | None:
    """Hash of the training configuration without its seed (None for a record without a config)."""
    cfg = rec.get("config")
    if not isinstance(cfg, dict):
        return None
    return hash_obj({k: cfg.get(k) for k in RECIPE_PARTS})


def flatten(rec: dict, path: Path | None = None) -> dict:
    ident = rec["identity"]
    ds, spec, sampler = ident.get("dataset") or {}, ident.get("metric_spec") or {}, ident.get("sampler") or {}
    prov = rec.get("provenance") or {}
    protocol, scale = _guidance(rec, sampler)
    # an imported model (`vltbench import lgm`) is labelled, so tables, plots and check never take it
    # for the method as vltbench trains it
    origin = rec.get("origin")
    row = {
        "method": f"{ident['method']} [{origin}]" if origin else ident["method"], "origin": origin,
        "length": ident["length"], "n_tokens": ident.get("n_tokens"),
        "generator": ident.get("generator"), "seed": ident["seed"], "preset": ident.get("preset"),
        "checkpoint_hash": ident.get("checkpoint_hash"),
        "train_seed": (rec.get("config") or {}).get("seed"), "recipe_hash": recipe_hash(rec),
        "dataset": ds.get("name"), "manifest_hash": ds.get("manifest_hash"), "image_size": ds.get("image_size"),
        "extractor_id": spec.get("extractor_id"), "metric_label": spec.get("label"),
        "n_samples": spec.get("n_samples"), "n_ref": spec.get("n_ref"), "ref_split": spec.get("ref_split"),
        "steps": sampler.get("steps"), "guidance_protocol": protocol, "cfg_scale": scale,  # the scale used
        # how far the search's runner-up lay behind the chosen scale, in noise stds (None: not searched)
        "cfg_margin": _num((rec.get("guidance") or {}).get("margin_over_noise")),
        "family": rec.get("family"), "alignment_representation": rec.get("alignment_representation"),
        # Canonical JSON of each comparability part: the check names the field that differs.
        "spec_dataset": canonical_json(ds), "spec_metric": canonical_json(spec),
        "spec_sampler": canonical_json(sampler),
        "comparable_key": comparable_key(ident),
    }
    row.update(measurements(rec))
    row["unavailable"] = canonical_json(rec.get("unavailable") or {})
    samples = (rec.get("artifacts") or {}).get("samples")
    row["samples_path"] = str(path.parent / samples) if samples and path is not None else None
    ckpt = (rec.get("artifacts") or {}).get("checkpoint")  # where its loss logs lie beside, on this machine
    row["checkpoint_path"] = (os.path.normpath(local(ckpt, base=path.parent if path is not None else None))
                              if ckpt else None)
    row.update(git_sha=prov.get("git_sha"), created=prov.get("created"), cell_id=rec["cell_id"],
               path=str(path) if path is not None else None)
    return row


def load_frame(root: str | Path, store: ResultStore | None = None, cell_ids: Iterable[str] | None = None):
    """One row per valid record under `root` (a folder or one record file), external scores left out;
    with cell_ids, only the records of those cells, in their order."""
    import pandas as pd

    root = Path(root)
    if not root.exists():
        raise UserError(f"results {root} do not exist; pass an existing folder or record file")
    store = store or ResultStore(root)
    # scores of external samples (`vltbench score`) have no method length: they are read one by one
    # (read_record), never as cells of a table, a plot or a check
    entries = [e for e in store.entries(cell_ids) if e[1].get("origin") != "external"]
    if cell_ids is not None:
        order = {cid: i for i, cid in enumerate(dict.fromkeys(cell_ids))}
        entries.sort(key=lambda e: order.get(e[1]["cell_id"], len(order)))
    if not entries:
        return pd.DataFrame(columns=list(flatten(_EMPTY, None)))
    df = pd.DataFrame([flatten(rec, path) for path, rec in entries])
    numeric = set().union(*(measurements(rec) for _, rec in entries))
    # float even when a metric is null everywhere: NaN marks "unavailable", never 0
    return with_labels(df.astype({c: float for c in numeric}))


def with_labels(df):
    """df.attrs["labels"]: what each metric column holds, e.g. {"gfid": "gFD_mnist-cnn", "kid":
    "KID_mnist-cnn"}: gfid / rfid / real_fid / rfid_full are the Fréchet distance of the records'
    extractor (FID only with Inception; the metric_label column names it per row). Set when every
    row shares one extractor."""
    from .metrics.specs import fd_name, metric_spec

    labels = df["metric_label"].dropna().unique() if "metric_label" in df else []
    if len(labels) == 1:
        out = {c: spec.header_for(labels[0]) for c in df.columns
               if (spec := metric_spec(c)) is not None and ("{" in spec.header)}
        fd = fd_name(labels[0], "")
        out.update({k: v for k, v in (("real_fid", f"{fd} of held-out real images (the floor)"),
                                      ("rfid_full", f"r{fd} at K = N (the ceiling)")) if k in df})
        df.attrs["labels"] = out
    return df


_EMPTY = {"cell_id": "", "identity": {"method": "", "length": 0, "seed": 0}, "metrics": {}}
