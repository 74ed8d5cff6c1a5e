"""Where a method's trained model comes from: shipped with the package, cached from an earlier
training run, or trained now. The training identity (config + data) picks the file."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from vltbench.core import dist, locks, progress
from vltbench.core.config import Config
from vltbench.core.errors import UserError
from vltbench.core.hashing import hash_obj, sha256_file
from vltbench.core.paths import cache_dir
from vltbench.data import Dataset
from vltbench.models import method_code, shipped
from vltbench.models.bundle import (
    Bundle,
    build_bundle,
    load_bundle,
    read_metadata,
    recorded_code,
    save_bundle,
    training_identity,
)
from vltbench.models.imported import describe_imported, fixed_length
from vltbench.models.method_code import describe as describe_code
from vltbench.models.method_code import identity_part

from .loops import state_dir, train_dits, train_tokenizer


@dataclass(frozen=True)
class CheckpointKey:
    """What picks a method's checkpoint for a config, computed once (`checkpoint_key`) and passed down, so
    the lookup reads top to bottom: the hash of the training identity without the code (the shipped
    manifest's key), the installed method code (its fingerprint and the part that decides training), the
    cache file they name and the shipped manifest's entry for this preset and method."""

    method: str
    identity: str
    fingerprint: dict
    code: dict
    cached: Path
    entry: dict | None
    assets: Any

    @property
    def shipped_file(self) -> Path | None:
        """The shipped checkpoint of this config, whatever code trained it."""
        if self.entry and self.entry["identity"] == self.identity:
            return Path(str(self.assets.joinpath(self.entry["file"])))
        return None

    @property
    def shipped(self) -> tuple[Path, str] | None:
        """The shipped checkpoint, with its recorded sha, when both its config and its code are this run's."""
        if self.shipped_file is None or identity_part(self.entry.get("method_code") or {}) != self.code:
            return None  # the method's code changed since it was trained: a cached or new checkpoint instead
        return self.shipped_file, self.entry["sha256"]

    def find(self) -> tuple[Path, str | None] | None:
        """The shipped checkpoint (with its sha) or the cached one (sha unknown), or None."""
        found = self.shipped
        if found is not None and found[0].is_file():
            return found
        return (self.cached, None) if self.cached.is_file() else None

    def stale(self) -> Path | None:
        """A checkpoint of this config trained by other code of the method: the newest cached one (or one of
        a vltbench that did not key the cache by code), else the shipped one; None when there is none."""
        config = self.cached.stem.rsplit("-", 1)[0]
        others = [p for p in self.cached.parent.glob(f"{config}*.safetensors") if p != self.cached and p.is_file()]
        return max(others, key=lambda p: p.stat().st_mtime) if others else self.shipped_file


def checkpoint_key(cfg: Config, method: str, num_classes: int) -> CheckpointKey:
    """The cache file is <method>-<config identity>-<code identity>: another version of the method's code
    trains a checkpoint of its own (and `CheckpointKey.stale` finds the others for a config)."""
    identity = hash_obj(training_identity(cfg, method, num_classes, code=False))
    fingerprint = method_code.code(method)
    code = identity_part(fingerprint)
    cached = cache_dir("checkpoints") / cfg.preset / f"{method}-{identity[:12]}-{hash_obj(code, 8)}.safetensors"
    manifest, assets = shipped.manifest()
    return CheckpointKey(method, identity, fingerprint, code, cached, manifest.get(f"{cfg.preset}/{method}"), assets)


def cached_path(cfg: Config, method: str, num_classes: int) -> Path:
    return checkpoint_key(cfg, method, num_classes).cached


def shipped_path(cfg: Config, method: str, num_classes: int) -> tuple[Path, str] | None:
    return checkpoint_key(cfg, method, num_classes).shipped


def find_checkpoint(cfg: Config, method: str, num_classes: int) -> tuple[Path, str | None] | None:
    return checkpoint_key(cfg, method, num_classes).find()


def no_checkpoint(cfg: Config, method: str, num_classes: int, hint: str | None = None,
                  key: CheckpointKey | None = None) -> UserError:
    """The error of `eval` without a usable checkpoint: none at all, or only stale ones (other code)."""
    key = key or checkpoint_key(cfg, method, num_classes)
    train = hint or f"`vltbench train --method {method}`"
    stale = key.stale()
    if stale is not None:
        try:
            meta = read_metadata(stale)
            recorded = recorded_code(meta, None if "method_code" in meta else sha256_file(stale))
        except UserError:
            recorded = None
        return UserError(f"the checkpoint of {method} for this config ({stale}) is stale: it was trained with "
                         f"{describe_code(recorded)}, the installed code is {describe_code(key.fingerprint)}; "
                         f"`vltbench eval` never trains: run {train} to retrain (then eval), or "
                         f"`vltbench run` with the same options, which retrains and evaluates")
    return UserError(f"no checkpoint for {method} with this config; run {train} first")


@contextmanager
def one_trainer(checkpoint: Path, method: str):
    """Hold the training lock of the cached `checkpoint`; yields True if another process held it first.

    Two single-process runs that need the same missing checkpoint would otherwise both train it (and
    interleave their resumable training states). The lock is vltbench.core.locks' flock, like the cell
    locks: released by the OS when its holder exits, even on kill -9, so no lock goes stale. Not
    taken under torchrun / submitit, whose ranks train together (a rank waiting on a lock while its
    peers enter collectives would deadlock)."""
    if dist.launched():
        yield False
        return
    lock = checkpoint.with_suffix(".train.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    waited = []

    def say():
        waited.append(True)
        progress.log(f"{method}: another process is training this configuration; waiting for it ({lock})")

    with locks.hold(lock, wait=True, on_wait=say):
        yield bool(waited)


def train_bundle(cfg: Config, method: str, ds: Dataset, device, out: Path | None = None,
                 lengths: list[int] | None = None, tokenizer: Path | None = None,
                 key: CheckpointKey | None = None) -> tuple[Bundle, Path, dict]:
    """Train (resuming from a saved training state if one exists); under torchrun every rank
    trains (DDP) and rank 0 writes the checkpoint. A single process that had to wait for another
    one training the same configuration loads that one's checkpoint instead of training again.
    tokenizer: an imported tokenizer checkpoint (`vltbench import ...`): stage 1 is skipped, its frozen
    tokenizer encodes the latents and only the DiT(s) train on them (`vltbench train --tokenizer`)."""
    dist.init(device)
    start = None if tokenizer is None else imported_tokenizer(Path(tokenizer), cfg, method, ds.num_classes)
    done = (key or checkpoint_key(cfg, method, ds.num_classes)).cached if start is None else imported_dit_path(start)
    with one_trainer(done, method) as waited:
        if waited and out is None and done.is_file():
            progress.log(f"{method}: the other process wrote {done}; loading it instead of training again")
            return load_bundle(done, cfg, method, ds.num_classes), done, {}
        return _train(cfg, method, ds, device, out or done, lengths, start)


def _train(cfg: Config, method: str, ds: Dataset, device, path: Path, lengths: list[int] | None,
           start: Bundle | None = None) -> tuple[Bundle, Path, dict]:
    bundle = start or build_bundle(cfg, method, ds.num_classes)
    # each stage's loss log lies beside the checkpoint it produces (train.loss_log_path)
    timing = {} if start is not None else train_tokenizer(bundle, ds, device, loss_log=path)
    timing.update(train_dits(bundle, ds, device, lengths, loss_log=path))
    if dist.is_main():
        save_bundle(bundle.to("cpu"), path)
        shutil.rmtree(state_dir(bundle), ignore_errors=True)  # finished: the checkpoint replaces the states
        progress.log(f"{method}: checkpoint written to {path}")
    dist.barrier()  # the other ranks read the checkpoint (its hash) only once it exists
    return bundle, path, timing


def imported_dit_path(bundle: Bundle) -> Path:
    """The cache place of a DiT trained on an imported tokenizer: keyed by the whole identity (it holds the
    tokenizer checkpoint's sha256), so `vltbench eval` takes it only through --checkpoint."""
    return cache_dir("checkpoints") / bundle.cfg.preset / f"{bundle.method_name}-imported-{hash_obj(bundle.identity, 12)}.safetensors"


def imported_tokenizer(path: Path, cfg: Config, method: str, num_classes: int) -> Bundle:
    """The frozen tokenizer (and method module) of an imported checkpoint, in a bundle of this config whose
    origin says the DiT is trained here. The checkpoint's tokenizer configuration must be the config's: the
    same sizes load the same weights, and a later `vltbench eval` of the result checks the same config."""
    opt = f"--tokenizer {path}"
    if not path.is_file():
        raise UserError(f"{opt} does not exist; pass the checkpoint `vltbench import ...` wrote")
    meta = read_metadata(path)
    if "origin" not in meta:
        raise UserError(f"{opt} was trained by vltbench, not imported; --tokenizer takes a checkpoint written by "
                        f"`vltbench import ...` (to train both stages, leave --tokenizer out)")
    try:
        origin, recorded = json.loads(meta["origin"]), json.loads(meta.get("config", "{}"))
    except json.JSONDecodeError:
        raise UserError(f"{opt} has unreadable metadata; import it again") from None
    if "dit" in meta.get("stages", "").split(","):
        raise UserError(f"{opt} already holds a generator ({origin.get('kind', 'imported')}); evaluate it with "
                        "`vltbench eval --checkpoint`, or import the tokenizer alone and pass that")
    if meta.get("method") != method:
        raise UserError(f"{opt} is a {meta.get('method')} checkpoint; pass --method {meta.get('method')}")
    mine = cfg.resolved(method)
    pairs = [(f"tokenizer.{k}", v, mine["tokenizer"].get(k)) for k, v in (recorded.get("tokenizer") or {}).items()]
    pairs += [("data.image_size", (recorded.get("data") or {}).get("image_size"), mine["data"]["image_size"]),
              (f"methods.{method}", (recorded.get("methods") or {}).get(method), mine["methods"].get(method))]
    for key, theirs, ours in pairs:
        if theirs != ours:
            raise UserError(f"{opt} was imported with {key}={json.dumps(theirs)}, the config has {json.dumps(ours)}; "
                            f"use the configuration the import wrote beside it ({path.with_suffix('.yaml').name}) "
                            "as --config, or a config that extends it")
    if (n := fixed_length(origin)) is not None:
        trains = set(cfg.lengths.train) | set(cfg.lengths.dit_cycle or [])
        if trains != {n}:
            raise UserError(f"{opt}: the {origin.get('kind')} decodes only K = {n}, but the config trains "
                            f"K = {sorted(trains)}; keep lengths.train: [{n}] (the import's configuration)")
    bundle = build_bundle(cfg, method, num_classes)
    tensors = load_file(str(path))
    try:
        for prefix, module in (("tokenizer.", bundle.tokenizer), ("method.", bundle.method)):
            module.load_state_dict({k[len(prefix):]: v.float() if v.is_floating_point() else v
                                    for k, v in tensors.items() if k.startswith(prefix)})
    except (RuntimeError, ValueError) as e:
        raise UserError(f"{opt} does not match this config: {str(e).strip().splitlines()[0]}") from None
    bundle.tokenizer.eval().requires_grad_(False)
    bundle.method.eval()
    bundle.stages = ["tokenizer"]
    describe_imported(bundle, {**origin, "dit": {"trained_by": "vltbench train --tokenizer",
                                                "tokenizer_checkpoint": {"file": path.name, "sha256": sha256_file(path)}}})
    progress.log(f"{method}: tokenizer from {path} ({origin.get('kind', 'imported')}, frozen); training the DiT only")
    return bundle


def obtain_bundle(cfg: Config, method: str, ds: Dataset, device, *, checkpoint: str | None = None,
                  train: bool = True, lengths: list[int] | None = None,
                  hint: str | None = None) -> tuple[Bundle, Path, str, dict]:
    """Load the given / shipped / cached checkpoint, or train one. Returns (bundle, path, sha256, timing).
    hint: the `vltbench train ...` command (with the caller's options) that messages name."""
    if checkpoint is not None:
        path, expected = Path(checkpoint), None
    else:
        key = checkpoint_key(cfg, method, ds.num_classes)
        # rank 0 decides, so every rank takes the same branch (train together or load)
        found = dist.broadcast_object(key.find() if dist.is_main() else None)
        if found is None:
            if not train:
                raise no_checkpoint(cfg, method, ds.num_classes, hint, key=key)
            bundle, path, timing = train_bundle(cfg, method, ds, device, lengths=lengths, key=key)
            return bundle.to(device), path, sha256_file(path), timing
        path, expected = found
    meta = read_metadata(path) if path.is_file() else {}  # a missing file: load_bundle says so
    if "origin" in meta and "dit" not in meta.get("stages", "").split(","):
        if '"command": "vltbench import' in meta["origin"]:  # a TiTok-family tokenizer release: no generator exists
            raise UserError(f"checkpoint {path} is an imported tokenizer release without a generator; the gFID sweep "
                            "needs a DiT trained on its latents (docs/released-tokenizers.md)")
        raise UserError(f"checkpoint {path} is an imported tokenizer without a generator; import it again with "
                        "`vltbench import lgm --generator xl.pth --latent-stats latents_stats.pt`")
    bundle = load_bundle(path, cfg, method, ds.num_classes, expected_sha=expected, hint=hint)
    if "dit" not in bundle.stages:
        raise UserError(f"checkpoint {path} holds no trained DiT; train it with {hint or f'`vltbench train --method {method}`'}")
    progress.log(f"{method}: loaded checkpoint {path}")
    return bundle.to(device), path, expected or sha256_file(path), {}


def describe(path: Path) -> dict:
    meta = read_metadata(path)
    return {"method": meta["method"], "preset": meta["preset"], "n_tokens": int(meta["n_tokens"]),
            "stages": meta["stages"], "sha256": sha256_file(path)}
