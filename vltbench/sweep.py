"""The sweep engine: for each (method, length, seed) cell, sample, decode, measure, and write one record.

Cells whose record exists are skipped (resume); a cell's record is written atomically only once all
its numbers exist, so an interrupted run leaves no half-record and a restart computes what is missing.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import progress
from .checkpoints import obtain_bundle
from .config import Config
from .data import Dataset, dataset_info, load_data
from .device import resolve_device
from .flow import sampling_nfe
from .generate import generate_batches, image_batches, reconstruct
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
    ds = load_data(cfg.data)
    extractor = get_extractor(cfg.eval.extractor, weights=cfg.eval.inception_weights, backend=cfg.eval.backend,
                              device=device)
    mspec = metric_spec(cfg, extractor)
    n_ref = min(cfg.eval.n_ref, len(ds.val))
    ref_cache = []

    def ref():  # computed (or read from its cache) only when a cell needs it
        if not ref_cache:
            ref_cache.append(reference_stats(
                {"dataset": ds.val.manifest_hash, "split": "val", "count": n_ref,
                 "preprocessing": "uint8 RGB, extractor's own resize"},
                lambda: image_batches(ds.val.images, n_ref, cfg.eval.batch_size), extractor))
        return ref_cache[0]

    for method in spec.methods:
        bundle, path, sha, train_timing = obtain_bundle(cfg, method, ds, device, checkpoint=spec.checkpoint,
                                                        train=spec.train)
        bank = cached_latents(bundle, ds, device)[0] if bundle.method.data_dependent else None
        for k, seed in itertools.product(spec.lengths, spec.seeds):
            identity = cell_identity(cfg, method, sha, k, seed, ds, mspec)
            cid = cell_id(identity)
            if store.exists(cid) and not spec.overwrite:
                progress.log(f"{method} K={k} seed={seed}: done earlier ({cid}), skipped")
                spec.skipped.append(cid)
                continue
            with store.claim(cid) as mine:
                if not mine:
                    progress.log(f"{method} K={k} seed={seed}: another process is computing it, skipped")
                    spec.skipped.append(cid)
                    continue
                record, grid = evaluate_cell(bundle, ds, extractor, ref(), identity, k, seed, bank, device)
                record["timing"].update({f"train_{a}": b for a, b in train_timing.items()})
                grid_name = f"{cid}.samples.png"
                record["artifacts"] = {"samples": grid_name, "checkpoint": str(path)}
                Image.fromarray(grid).save(store.artifact_path(record, grid_name))
                spec.written.append(store.write(record, overwrite=spec.overwrite))
                m = record["metrics"]
                progress.log(f"{method} K={k} seed={seed}: g{mspec['label']} {m['gfid']:.2f} "
                             f"r{mspec['label']} {m['rfid']:.2f} ({record['timing']['total_s']:.0f} s)")
    return spec


def _strip(batches, keep: list):
    """Pass batches through, keeping the first GRID_SAMPLES images for the sample grid."""
    for b in batches:
        if sum(len(x) for x in keep) < GRID_SAMPLES:
            keep.append(b[: GRID_SAMPLES - sum(len(x) for x in keep)])
        yield b


def evaluate_cell(bundle: Bundle, ds: Dataset, extractor, ref, identity: dict, k: int, seed: int, bank, device):
    from .metrics import ReconMeter
    from .metrics.alignment import alignment_metrics
    from .metrics.flops import stage_flops

    cfg, e, s = bundle.cfg, bundle.cfg.eval, bundle.cfg.sampler
    timing, unavailable, notes = {}, {}, []
    t_cell = time.perf_counter()
    common = dict(kid_subset_size=min(e.kid_subset_size, e.n_samples), seed=seed, fid_method=FID_SQRT)

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        timing[name] = time.perf_counter() - t0
        return out

    keep: list = []
    with progress.task(f"{bundle.method_name} K={k}: guided samples", 1):
        guided = timed("guided_s", lambda: compute_image_metrics(
            extractor, None, _strip(generate_batches(bundle, k, e.n_samples, seed, s, s.cfg_scale, e.batch_size, bank), keep),
            ref=ref, **common))
    if s.cfg_scale != 1.0:
        plain = timed("unguided_s", lambda: compute_image_metrics(
            extractor, None, generate_batches(bundle, k, e.n_samples, seed, s, 1.0, e.batch_size, bank), ref=ref, **common))
    else:
        plain = guided

    meter = ReconMeter(device=device)
    n_rec = min(e.n_samples, len(ds.val))

    def recon_batches():
        for real in image_batches(ds.val.images, n_rec, e.batch_size):
            rec = reconstruct(bundle, real, k)
            meter.update(real, rec)
            yield rec

    recon = timed("recon_s", lambda: compute_image_metrics(extractor, None, recon_batches(), ref=ref, **common))
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
                          provenance=provenance(str(device), 1), config=cfg.resolved(bundle.method_name))
    grid = torch.cat(keep)[:GRID_SAMPLES].permute(0, 2, 3, 1).numpy()
    return record, np.concatenate(list(grid), axis=1)


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
