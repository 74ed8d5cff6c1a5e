"""The planned sweep: every (method, K, seed) cell with its identity, its cell id and whether its record
is in the store. One `plan` serves the local run (rank 0 plans, the other torchrun ranks follow), the
job-array executors (which submit the cells not done) and `vltbench.evaluate`'s frame (which reads the
planned cells' records).

A cell's identity is everything its numbers depend on (checkpoint, length, seed, sampler and guidance
protocol, dataset, measurement spec); its id is the identity's hash, so committed records keep their
ids only while these functions build the same dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vltbench.core.config import Config
from vltbench.core.errors import UserError

from .store import ResultStore, cell_id

if TYPE_CHECKING:  # pragma: no cover (they load torch: check_lengths stays cheap for the CLI)
    from vltbench.data import Dataset

    from .references import RealSets

FID_SQRT = "eigh"  # trace sqrt(S1 S2) via symmetric eigendecompositions: same value as sqrtm, faster on CPU
# Version of the measurement protocol, part of every measurement spec: records measured under another
# protocol (e.g. 1: first-n references, one fixed guidance scale) never share a table or a check.
EVAL_PROTOCOL = 2
SELECT_SEED_OFFSET = 1_000_000  # guidance is chosen on samples of seed + this: never the test samples
# How a walk visits the grid (sampler.cfg_search: walk) and how a searched grid grows: both are part of the
# cell identity (another rule may choose another scale).
WALK_RULE = ("score the grid's middle scale (index len // 2) and its grid neighbours, then the unscored grid "
             "neighbours of the best scored, until both are scored; then extend as the rule says")
EXTEND_RULE = ("while the best scale is the largest scored, add largest x (largest / second largest); while it "
               "is the smallest and above 1.0, add max(1.0, smallest / (second / smallest)); 3 significant "
               "digits; at most cfg_extend scales; ties to the smaller scale")


@dataclass
class SweepSpec:
    """What to evaluate (inputs only: what a run did is its SweepOutcome)."""

    cfg: Config
    methods: list[str]
    lengths: list[int]
    seeds: list[int]
    results: Path
    overwrite: bool = False
    checkpoint: str | None = None
    train: bool = True
    train_args: str = ""  # the caller's options that shape training (--preset, --config, --set, ...), for hints
    save_samples: bool = False  # write each computed cell's gFID samples as an ADM .npz beside its record

    def skips(self, cell: Cell) -> bool:
        """Whether the sweep leaves `cell` as it is: its record exists and overwrite is off."""
        return cell.done and not self.overwrite

    def hint(self, method: str) -> str:
        """The command that trains `method` as this sweep would, for messages."""
        return f"`vltbench train --method {method}{self.train_args}`"


@dataclass(frozen=True)
class Cell:
    method: str
    length: int
    seed: int
    identity: dict
    cell_id: str
    done: bool  # a valid record of it was in the store when planned

    def __str__(self) -> str:
        return f"{self.method} K={self.length} seed={self.seed}"


@dataclass
class SweepOutcome:
    """What a sweep did: its planned cells (methods x lengths x seeds), the records it wrote, the cells
    found done and those another live process was computing (cell ids)."""

    cells: list[Cell] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)


def _presets_allowing(k: int) -> str:
    """'; 64 is valid on preset imagenet256 (--preset imagenet256)' for the presets whose N >= k, or ''."""
    from vltbench.core.config import load_config, preset_names

    ok = [p for p in preset_names() if load_config(p).tokenizer.n_tokens >= k]
    return f"; {k} is valid on preset {' / '.join(ok)} (--preset {ok[0]})" if ok else ""


def check_lengths(lengths: Iterable[int], n_max: int, preset: str | None = None) -> list[int]:
    """The lengths K of a sweep, each in 1..N and given once; otherwise one UserError naming --lengths
    (with the presets where a too-large K is valid). `preset`: the preset in use, for the message."""
    out: list[int] = []
    for k in lengths:
        if k <= 0 or k > n_max:
            where = f" of preset {preset}" if preset else ""
            raise UserError(f"--lengths: {k} is outside 1..{n_max} (the maximum length N={n_max}{where})"
                            + (_presets_allowing(k) if k > n_max else ""))
        if k in out:
            raise UserError(f"--lengths: {k} is given twice; list each length once")
        out.append(int(k))
    return out


def extractor_label(extractor) -> str:
    from .extractors import metric_label
    return metric_label(extractor.id)


def measurement_spec(cfg: Config, extractor, sets: RealSets) -> dict:
    """How a cell's numbers are measured (the identity's "metric_spec"): extractor, sample and reference
    counts, the reference and held-out sets, the protocol version."""
    e = cfg.eval
    held = sets.held_out
    return {"protocol": EVAL_PROTOCOL, "extractor_id": extractor.id, "label": extractor_label(extractor),
            "n_samples": e.n_samples, "n_recon": len(held.idx), "n_ref": e.n_ref,
            "ref_split": "adm-npz" if sets.adm else sets.test_split, "reference": sets.reference_spec(),
            "held_out": {"split": held.split_name, "count": len(held.idx), "manifest": held.info["manifest"]},
            "kid_subset_size": e.kid_subset_size, "pr_k": 3, "fid_sqrt": FID_SQRT}


def sampler_identity(cfg: Config) -> dict:
    """The sampler settings and the guidance protocol a cell was measured with."""
    from .references import splits

    s = cfg.sampler
    if s.guidance == "search":
        guidance = {"protocol": "search", "grid": list(s.cfg_scales), "n_select": s.select_samples,
                    "select_reference": splits(cfg.eval.reference)[1],
                    "select_seed": f"seed + {SELECT_SEED_OFFSET}",
                    "extend": {"max_extra": s.cfg_extend, "rule": EXTEND_RULE}}
        if s.cfg_search == "walk":  # only then: cells searched over the whole grid keep their ids
            guidance["walk"] = WALK_RULE
    else:
        guidance = {"protocol": "fixed", "scale": s.cfg_scale}
        if s.cfg_scale_per_length:  # only when set: cells measured before the option keep their ids
            guidance["per_length"] = {str(k): w for k, w in sorted(s.cfg_scale_per_length.items())}
    return {"steps": s.steps, "shift": s.shift, "cfg_interval": list(s.cfg_interval), "guidance": guidance}


def cell_identity(cfg: Config, method: str, ckpt_sha: str, k: int, seed: int, ds: Dataset, spec: dict) -> dict:
    # the key stays "metric_spec": cell ids are hashes of these dicts
    return {"method": method, "checkpoint_hash": ckpt_sha, "length": k, "n_tokens": cfg.tokenizer.n_tokens,
            "generator": cfg.generator, "seed": seed, "preset": cfg.preset, "sampler": sampler_identity(cfg),
            "dataset": {"name": ds.name, "manifest_hash": ds.manifest_hash, "image_size": ds.image_size},
            "metric_spec": spec}


def plan(spec: SweepSpec, shas: Mapping[str, str], ds: Dataset, mspec: dict,
         store: ResultStore | None = None) -> list[Cell]:
    """Every cell of `spec` in the order methods x lengths x seeds, each marked done when a valid record
    of it is in the store. shas: {method: checkpoint sha256} for every method of `spec`; mspec: the
    measurement_spec. The lengths are validated here, once for the whole sweep."""
    cfg = spec.cfg
    ks = check_lengths(spec.lengths, cfg.tokenizer.n_tokens, cfg.preset)
    store = store if store is not None else ResultStore(spec.results)
    cells = []
    for method in spec.methods:
        for k in ks:
            for seed in spec.seeds:
                identity = cell_identity(cfg, method, shas[method], k, seed, ds, mspec)
                cid = cell_id(identity)
                cells.append(Cell(method, k, seed, identity, cid, store.exists(cid)))
    return cells
