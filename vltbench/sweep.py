"""The sweep engine: for each (method, length, seed) cell, sample, decode, measure, and write one record.

Cells whose record exists are skipped (resume); a cell's record is written atomically only once all
its numbers exist, so an interrupted run leaves no half-record and a restart computes what is missing.

Under `torchrun` every rank runs the same sweep: rank 0 decides which cells to compute (and holds their
locks), each rank samples / reconstructs and extracts features for its own contiguous run of whole
batches of sample indices, the float64 moment sums are all-reduced and the features gathered on rank 0
in sample-index order, and rank 0 alone computes the metrics and writes the record. Since a sample
depends only on (seed, index) and every batch is the one a single process makes, the numbers do not
depend on the number of processes.
"""

from __future__ import annotations

import itertools
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import dist, progress
from .atomic import atomic_path
from .checkpoints import obtain_bundle
from .config import Config
from .data import Dataset, dataset_info, load_data
from .device import resolve_device
from .flow import sampling_nfe
from .generate import generate_batches, image_batches, reconstruct, shard_ids
from .latents import cached_latents
from .metrics import compute_image_metrics, get_extractor, reference_stats
from .model import Bundle, read_metadata
from .store import ResultStore, build_record, cell_id, provenance

FID_SQRT = "eigh"  # trace sqrt(S1 S2) via symmetric eigendecompositions: same value as sqrtm, faster on CPU
GRID_SAMPLES = 8  # samples kept per cell for the sample-grid figure (same seeds/classes everywhere)


@dataclass
class SweepSpec:
    cfg: Config
    methods: list[str]
    lengths: list[int]
    seeds: list[int]
    results: Path
    overwrite: bool = False
    checkpoint: str | None = None
    train: bool = True
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def metric_spec(cfg: Config, extractor) -> dict:
    e = cfg.eval
    return {"extractor_id": extractor.id, "label": extractor_label(extractor), "n_samples": e.n_samples,
            "n_recon": e.n_samples, "n_ref": e.n_ref, "ref_split": "val", "kid_subset_size": e.kid_subset_size,
            "pr_k": 3, "fid_sqrt": FID_SQRT}


def extractor_label(extractor) -> str:
    from .metrics import metric_label
    return metric_label(extractor.id)


def cell_identity(cfg: Config, method: str, ckpt_sha: str, k: int, seed: int, ds: Dataset, spec: dict) -> dict:
    s = cfg.sampler
    return {"method": method, "checkpoint_hash": ckpt_sha, "length": k, "n_tokens": cfg.tokenizer.n_tokens,
            "generator": cfg.generator, "seed": seed, "preset": cfg.preset,
            "sampler": {"steps": s.steps, "shift": s.shift, "cfg_scale": s.cfg_scale, "cfg_interval": list(s.cfg_interval)},
            "dataset": {"name": ds.name, "manifest_hash": ds.manifest_hash, "image_size": ds.image_size},
            "metric_spec": spec}


def run_sweep(spec: SweepSpec) -> SweepSpec:
    cfg = spec.cfg
    store = ResultStore(spec.results)
    store._ensure_writable()  # fail before any work if the results folder is unusable
    if spec.checkpoint is not None:
        read_metadata(spec.checkpoint)  # a missing or corrupt file fails before any work
    device = resolve_device(cfg.device)
    dist.init(device)
    with dist.main_first():  # rank 0 builds any data cache, the others read it
        ds = load_data(cfg.data)
    extractor = get_extractor(cfg.eval.extractor, weights=cfg.eval.inception_weights, backend=cfg.eval.backend,
                              device=device)
    mspec = metric_spec(cfg, extractor)
    n_ref = min(cfg.eval.n_ref, len(ds.val))
    ref_cache = []

    def ref():  # computed (or read from its cache) only when a cell needs it; rank 0 fills the cache
        if not ref_cache:
            with dist.main_first():
                ref_cache.append(reference_stats(
                    {"dataset": ds.val.manifest_hash, "split": "val", "count": n_ref,
                     "preprocessing": "uint8 RGB, extractor's own resize"},
                    lambda: image_batches(ds.val.images, n_ref, cfg.eval.batch_size), extractor))
        return ref_cache[0]

    for method in spec.methods:
        bundle, path, sha, train_timing = obtain_bundle(cfg, method, ds, device, checkpoint=spec.checkpoint,
                                                        train=spec.train)
        bank = None
        if bundle.method.data_dependent:
            with dist.main_first():
                bank = cached_latents(bundle, ds, device)[0]
        for k, seed in itertools.product(spec.lengths, spec.seeds):
            identity = cell_identity(cfg, method, sha, k, seed, ds, mspec)
            cid = cell_id(identity)
            # rank 0 decides (record exists? lock taken?) and every rank follows
            if dist.broadcast_object(store.exists(cid) and not spec.overwrite if dist.is_main() else None):
                progress.log(f"{method} K={k} seed={seed}: done earlier ({cid}), skipped")
                spec.skipped.append(cid)
                continue
            with store.claim(cid) if dist.is_main() else nullcontext(None) as mine:
                if not dist.broadcast_object(mine):
                    progress.log(f"{method} K={k} seed={seed}: another process is computing it, skipped")
                    spec.skipped.append(cid)
                    continue
                # the lock holder may have finished this cell between our check and our claim
                if dist.broadcast_object(store.exists(cid) and not spec.overwrite if dist.is_main() else None):
                    progress.log(f"{method} K={k} seed={seed}: finished by another process ({cid}), skipped")
                    spec.skipped.append(cid)
                    continue
                record, grid = evaluate_cell(bundle, ds, extractor, ref(), identity, k, seed, bank, device)
                if record is None:  # not rank 0: rank 0 writes the record
                    continue
                record["timing"].update({f"train_{a}": b for a, b in train_timing.items()})
                grid_name = f"{cid}.samples.png"
                record["artifacts"] = {"samples": grid_name, "checkpoint": str(path)}
                with atomic_path(store.artifact_path(record, grid_name)) as tmp:
                    Image.fromarray(grid).save(tmp, format="PNG")
                spec.written.append(store.write(record, overwrite=spec.overwrite))
                m = record["metrics"]
                progress.log(f"{method} K={k} seed={seed}: g{mspec['label']} {m['gfid']:.2f} "
                             f"r{mspec['label']} {m['rfid']:.2f} ({record['timing']['total_s']:.0f} s)")
    dist.barrier()  # no rank leaves before rank 0 has written the last record
    return spec


def _keep_grid(batches, ids: torch.Tensor, keep: list):
    """Pass batches (of samples `ids`, in order) through, keeping those with index < GRID_SAMPLES."""
    pos = 0
    for b in batches:
        bid = ids[pos:pos + len(b)]
        pos += len(b)
        first = bid < GRID_SAMPLES
        if first.any():
            keep.append((b[first], bid[first]))
        yield b


class _Replay:
    """Stands in for the extractor on rank 0: hands back the features gathered from every rank, batch
    by batch in sample-index order, so the metrics see what one process would have extracted."""

    def __init__(self, extractor, features: np.ndarray, logits: np.ndarray | None):
        self.id, self.dim, self.name = extractor.id, extractor.dim, getattr(extractor, "name", "replay")
        self.device = getattr(extractor, "device", "cpu")
        self.has_logits = logits is not None
        self._features, self._logits, self._pos = features, logits, 0

    def __call__(self, images):
        s, self._pos = self._pos, self._pos + len(images)
        out = {"features": self._features[s:self._pos]}
        if self._logits is not None:
            out["logits"] = self._logits[s:self._pos]
        return out


def _image_metrics(extractor, batches, ids: torch.Tensor, n: int, batch_size: int, ref, common: dict) -> dict | None:
    """compute_image_metrics of the `n` images whose batches of this rank's indices `ids` are streamed.

    One process: as is. Under torchrun: each rank extracts its own batches; the float64 moment sums
    are all-reduced, features (and logits) are gathered on rank 0 in index order and replayed there in
    the single-process batches; rank 0 returns the metrics, the other ranks None."""
    if dist.world_size() == 1:
        return compute_image_metrics(extractor, None, batches, ref=ref, **common)
    from .metrics import FeatureStats

    stats, feats, logits, size = FeatureStats(extractor.dim), [], [], None
    for b in batches:
        size = tuple(b.shape[-2:])
        out = extractor(b)
        stats.update(out["features"])
        feats.append(out["features"])
        if "logits" in out:
            logits.append(out["logits"])
    total = FeatureStats.from_arrays(*(dist.all_reduce_sum(a) for a in stats.to_arrays()))
    f_all = dist.gather_rows(np.concatenate(feats) if feats else None, ids)
    l_all = dist.gather_rows(np.concatenate(logits) if logits else None, ids)
    size = dist.broadcast_object(size)  # rank 0 always holds the first batch
    if not dist.is_main():
        return None
    if total.n != n or f_all is None or len(f_all) != n or not np.allclose(f_all.sum(0), total.sum, rtol=1e-9, atol=1e-9):
        raise RuntimeError(f"distributed feature reduction is inconsistent: {total.n} summed, "
                           f"{0 if f_all is None else len(f_all)} gathered, {n} expected")
    dummy = torch.zeros((1, 3, *size), dtype=torch.uint8)  # shape only: the replay ignores pixels
    chunks = (dummy.expand(min(batch_size, n - s), -1, -1, -1) for s in range(0, n, batch_size))
    return compute_image_metrics(_Replay(extractor, f_all, l_all), None, chunks, ref=ref, **common)


def evaluate_cell(bundle: Bundle, ds: Dataset, extractor, ref, identity: dict, k: int, seed: int, bank, device):
    """(record, sample grid) on rank 0; (None, None) on the other ranks (they share the sampling)."""
    from .metrics import ReconMeter
    from .metrics.alignment import alignment_metrics
    from .metrics.flops import stage_flops

    cfg, e, s = bundle.cfg, bundle.cfg.eval, bundle.cfg.sampler
    timing, unavailable, notes = {}, {}, []
    t_cell = time.perf_counter()
    common = dict(kid_subset_size=min(e.kid_subset_size, e.n_samples), seed=seed, fid_method=FID_SQRT)
    main = dist.is_main()

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        timing[name] = time.perf_counter() - t0
        return out

    ids = shard_ids(e.n_samples, e.batch_size)  # this rank's whole batches of sample indices

    def samples(scale):
        return generate_batches(bundle, k, e.n_samples, seed, s, scale, e.batch_size, bank, ids=ids)

    keep: list = []
    n_rec = min(e.n_samples, len(ds.val))
    rec_ids = shard_ids(n_rec, e.batch_size)
    meter = ReconMeter(device=device)

    def recon_batches():
        start = int(rec_ids[0]) if len(rec_ids) else n_rec
        for real in image_batches(ds.val.images, start + len(rec_ids), e.batch_size, start=start):
            rec = reconstruct(bundle, real, k)
            meter.update(real, rec)
            yield rec

    generated = len(ids) * (2 if s.cfg_scale != 1.0 else 1)
    with progress.task(f"{bundle.method_name} K={k}: sample, reconstruct, extract features",
                       generated + len(rec_ids)) as bar:
        guided = timed("guided_s", lambda: _image_metrics(
            extractor, _counted(_keep_grid(samples(s.cfg_scale), ids, keep), bar), ids, e.n_samples, e.batch_size,
            ref, common))
        if s.cfg_scale != 1.0:
            plain = timed("unguided_s", lambda: _image_metrics(
                extractor, _counted(samples(1.0), bar), ids, e.n_samples, e.batch_size, ref, common))
        else:
            plain = guided
        recon = timed("recon_s", lambda: _image_metrics(extractor, _counted(recon_batches(), bar), rec_ids, n_rec,
                                                          e.batch_size, ref, common))
    grid_ids = torch.cat([i for _, i in keep]) if keep else torch.zeros(0, dtype=torch.long)
    grid = dist.gather_rows(torch.cat([x for x, _ in keep]).numpy() if keep else None, grid_ids)

    if dist.world_size() > 1:  # per-image values from every rank, in index order, then averaged on rank 0
        for name in ("psnr", "ssim", "lpips"):
            vals = getattr(meter, name)
            got = dist.gather_rows(np.asarray(vals, np.float64) if vals else None, rec_ids[:len(vals)])
            if main:
                setattr(meter, name, [] if got is None else got.tolist())
    if not main:
        return None, None
    rec_q = meter.result()

    nfe, _ = sampling_nfe(s.steps, s.shift, s.cfg_scale, s.cfg_interval)
    compute = timed("flops_s", lambda: stage_flops(bundle, k, s, s.cfg_scale))
    with torch.no_grad():
        z_val = bundle.tokenizer.encode(torch.as_tensor(ds.val.images(np.arange(min(500, len(ds.val))))).float()
                                        .div(127.5).sub(1).to(device))
    align = timed("alignment_s", lambda: alignment_metrics(bundle, z_val, k))

    metrics = {"gfid": guided["fid"], "gfid_bootstrap_std": guided["fid_bootstrap_std"],
               "gfid_noguidance": plain["fid"], "rfid": recon["fid"], "rfid_bootstrap_std": recon["fid_bootstrap_std"],
               "kid": guided["kid"], "kid_std": guided["kid_std"], "inception_score": guided["inception_score"],
               "precision": guided["precision"], "recall": guided["recall"],
               "psnr": rec_q.get("psnr"), "ssim": rec_q.get("ssim"), "lpips": rec_q.get("lpips")}
    for name, why in {**guided["reasons"], **rec_q.get("reasons", {})}.items():
        if name in metrics and metrics[name] is None:
            unavailable[name] = why
    notes += [f"{key}: {val}" for key, val in bundle.method.describe().items()]
    notes.append(f"gFID with CFG scale {s.cfg_scale} (interval {list(s.cfg_interval)}); gfid_noguidance at scale 1.0; "
                 f"{e.n_samples} samples vs {ref.stats.n if ref.stats else '?'} val images; "
                 f"rFID: {n_rec} val reconstructions vs the same val reference")
    timing["total_s"] = time.perf_counter() - t_cell
    record = build_record(identity, _plain(metrics), unavailable=unavailable, compute=_plain(compute),
                          alignment=_plain(align), timing=timing, notes=notes,
                          provenance=provenance(str(device), dist.world_size()), config=cfg.resolved(bundle.method_name))
    grid = grid[:GRID_SAMPLES].transpose(0, 2, 3, 1)
    return record, np.concatenate(list(grid), axis=1)


def _counted(batches, bar):
    """Pass batches through, advancing the cell's progress bar."""
    for b in batches:
        bar.advance(len(b))
        yield b


def _plain(obj):
    """numpy scalars/arrays -> JSON-ready Python values."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
