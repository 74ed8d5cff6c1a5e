"""The sweep engine: for each (method, length, seed) cell, sample, decode, measure, and write one record.

Cells whose record exists are skipped (resume); a cell's record is written atomically only once all
its numbers exist, so an interrupted run leaves no half-record and a restart computes what is missing.

Under `torchrun` every rank runs the same sweep: rank 0 decides which cells to compute (and holds their
locks), each rank samples / reconstructs and extracts features for its own contiguous run of whole
batches of sample indices, the float64 moment sums are all-reduced and the features gathered on rank 0
in sample-index order, and rank 0 alone computes the metrics and writes the record. Since a sample
depends only on (seed, index) and every batch is the one a single process makes, the numbers do not
depend on the number of processes.

The protocol (docs/numbers.md, "What the numbers mean"): every real-image subset is class-stratified
(vltbench.evaluation.references); the guidance scale is searched per (method, K) on samples with their own seeds
against the split that is not the test reference (or fixed, labelled so); each record carries the
floor (held-out real images vs the reference), the ceiling (reconstruction at K = N) and the
reference-free cross-length distance of same-seed samples at K and N.
"""

from __future__ import annotations

import io
import time
import warnings
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vltbench.core import dist, progress
from vltbench.core.atomic import remove_leftovers
from vltbench.core.device import resolve_device, to_float
from vltbench.core.errors import UserError
from vltbench.core.paths import cache_dir
from vltbench.data import load_data
from vltbench.models import method_code
from vltbench.models.bundle import Bundle, read_metadata
from vltbench.models.imported import fixed_length
from vltbench.training.checkpoints import obtain_bundle
from vltbench.training.latents import cached_latents

from .extractors import extractor_for
from .generate import generate_batches, reconstruct, sample_labels, shard_ids
from .guidance import bracket_search, choose_guidance  # noqa: F401 (bracket_search: imported from here too)
from .metrics import compute_image_metrics, reference_stats
from .metrics.refstats import refstats_key, refstats_path
from .metrics.specs import passes, record_metrics
from .plan import FID_SQRT, SweepOutcome, SweepSpec, extractor_label, measurement_spec, plan
from .references import RealSets
from .sample_export import SampleShard, merged_npz
from .store import ResultStore, build_record, provenance

GRID_SAMPLES = 8  # samples kept per cell for the sample-grid figure (same seeds/classes everywhere)
PREFIX_BYTES = 2**30  # at most this much of a cell's sampling state is kept between its two passes
# The unguided samples of the K = N cell are the checkpoint's full-length set (MethodRefs.full_samples,
# cached per seed for xlen_distance): that cell reads them instead of sampling them a second time.
SHARE_FULL_LENGTH = True


def _new_folders(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet (deepest first)."""
    out = []
    for p in [path, *path.parents]:
        if p.exists():
            break
        out.append(p)
    return out


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this run created, if they hold no file (a failed start leaves nothing)."""
    for top in folders[::-1][:1]:  # the outermost created folder: all others lie inside it
        try:
            if not top.is_dir() or any(p.is_file() or p.is_symlink() for p in top.rglob("*")):
                return
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                d.rmdir()
            top.rmdir()
        except OSError:  # something appeared meanwhile (another run): leave it, the real error matters
            return


def run_sweep(spec: SweepSpec) -> SweepOutcome:
    made = _new_folders(Path(spec.results)) if dist.is_main() else []
    try:
        return _run_sweep(spec)
    except BaseException:
        _remove_empty(made)
        raise


def _run_sweep(spec: SweepSpec) -> SweepOutcome:
    cfg = spec.cfg
    out = SweepOutcome()
    store = ResultStore(spec.results)
    store.ensure_writable()  # fail before any work if the results folder is unusable
    if spec.checkpoint is not None:
        read_metadata(spec.checkpoint)  # a missing or corrupt file fails before any work
    if dist.is_main():  # what killed runs left (temp files, free lock files, probes, orphan images)
        store.tidy()
        remove_leftovers(cache_dir())
    device = resolve_device(cfg.device)
    dist.init(device)
    with dist.main_first():  # rank 0 builds any data cache, the others read it
        ds = load_data(cfg.data)
    extractor = extractor_for(cfg, device)  # refuses an extractor outside the dataset's domain, before training
    sets = RealSets(cfg, ds, extractor)
    sets.check_sizes()  # every split large enough for every metric: refused now, not after training
    mspec = measurement_spec(cfg, extractor, sets)
    _small_n_warning(cfg, extractor)
    for method in spec.methods:
        bundle, path, sha, train_timing = obtain_bundle(cfg, method, ds, device, checkpoint=spec.checkpoint,
                                                        train=spec.train, hint=spec.hint(method))
        if (n := fixed_length(bundle.origin)) is not None and (other := [k for k in spec.lengths if k != n]):
            raise UserError(f"--lengths {','.join(map(str, other))}: the {bundle.origin.get('kind')} decodes only K = {n} "
                            f"(one fixed K per checkpoint); pass --lengths {n}")
        code = method_code.code(method)  # what trained the checkpoint too: load_bundle refuses other code
        bank = None
        if bundle.method.data_dependent:
            with dist.main_first():
                bank = cached_latents(bundle, ds, device)[0]
        per_method = MethodRefs(bundle, sha, sets, bank)
        # this method's cells (its checkpoint hash is known now): rank 0 plans, every rank follows
        cells = plan(replace(spec, methods=[method]), {method: sha}, ds, mspec, store) if dist.is_main() else None
        cells = dist.broadcast_object(cells)
        out.cells += cells
        for cell in cells:
            identity, cid, k, seed = cell.identity, cell.cell_id, cell.length, cell.seed
            if spec.skips(cell):
                again = (" (its samples were not saved unless it was run with --save-samples: --overwrite "
                         "computes it again)" if spec.save_samples else "")
                progress.log(f"{method} K={k} seed={seed}: done earlier ({cid}), skipped{again}")
                out.skipped.append(cid)
                continue
            with store.claim(cid) if dist.is_main() else nullcontext(None) as mine:
                if not dist.broadcast_object(mine):
                    progress.log(f"{method} K={k} seed={seed}: another process is computing it, skipped")
                    out.busy.append(cid)
                    continue
                # the lock holder may have finished this cell between our plan and our claim
                if dist.broadcast_object(store.exists(cid) and not spec.overwrite if dist.is_main() else None):
                    progress.log(f"{method} K={k} seed={seed}: finished by another process ({cid}), skipped")
                    out.skipped.append(cid)
                    continue
                if dist.is_main():
                    store.quarantine(cid)  # a corrupt record of this cell: moved aside (with a warning)
                folder = store.path_for(method, cid).parent
                shard = SampleShard(folder, cid) if spec.save_samples else None
                try:
                    with warnings.catch_warnings():  # said once per sweep (above), not once per pass
                        warnings.filterwarnings("ignore", message=r"\d+ (real|generated) samples <= feature dim")
                        record, grid = evaluate_cell(bundle, sets, per_method, identity, k, seed, device, shard)
                    with merged_npz(shard, folder, cid, bundle.num_classes) as npz:
                        if record is None:  # not rank 0: rank 0 writes the record
                            continue
                        record["timing"].update({f"train_{a}": b for a, b in train_timing.items()})
                        record["provenance"]["method_code"] = code
                        grid_name = f"{cid}.samples.png"
                        record["artifacts"] = {"samples": grid_name, "checkpoint": str(path)}
                        png = io.BytesIO()
                        Image.fromarray(grid).save(png, format="PNG")
                        files = {grid_name: png.getvalue()}
                        if npz is not None:  # the gFID samples, for the ADM evaluator or `vltbench score`
                            tmp, info = npz
                            record["artifacts"]["samples_npz"] = {
                                **info, "what": f"the {info['count']} guided samples gfid is computed on "
                                                f"(scale {record['guidance']['scale']:g})"}
                            files[info["path"]] = tmp
                        out.written.append(store.write(record, overwrite=spec.overwrite, artifacts=files))
                finally:
                    if shard is not None:
                        shard.close()
                m = record["metrics"]
                kid = f" KID {m['kid']:.4f} (real floor {m['real_kid']:.4f})" if m.get("real_kid") is not None else ""
                progress.log(f"{method} K={k} seed={seed}: g{mspec['label']} {m['gfid']:.2f} "
                             f"(w={record['guidance']['scale']:g}) r{mspec['label']} {m['rfid']:.2f} "
                             f"(real floor {m['real_fid']:.2f}){kid} ({record['timing']['total_s']:.0f} s)")
    dist.barrier()  # no rank leaves before rank 0 has written the last record
    return out


def _small_n_warning(cfg, extractor) -> None:
    """One warning per sweep when the sample counts are at most the feature dimension (unless `auto`'s
    caveat line already said it): the Fréchet distance is then strongly biased and KID leads the tables."""
    from .extractors.domains import auto_caveat

    n = min(cfg.eval.n_samples, cfg.eval.n_ref)
    if n <= extractor.dim and auto_caveat(cfg) is None:
        warnings.warn(f"{n} samples <= feature dim {extractor.dim}: the covariance is singular and "
                      f"{extractor_label(extractor)} strongly biased; KID leads the tables (use more than "
                      f"{extractor.dim} samples for a Fréchet distance)", UserWarning, stacklevel=3)


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
        self.dataset_classes = getattr(extractor, "dataset_classes", False)
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
        return compute_image_metrics(extractor, None, batches, ref=ref, return_features=True, **common)
    sizes: list = []
    outs = [extractor(b) for b in _sizes(batches, sizes)]
    return _metrics_of_features(extractor, outs, sizes[0] if sizes else None, ids, n, batch_size, ref, common)


def _sizes(batches, out: list):
    """Pass batches through, noting the first one's (H, W) in `out`."""
    for b in batches:
        if not out:
            out.append(tuple(b.shape[-2:]))
        yield b


def _metrics_of_features(extractor, outs: list[dict], size, ids: torch.Tensor, n: int, batch_size: int, ref,
                         common: dict) -> dict | None:
    """compute_image_metrics of images already extracted (`outs`: the extractor's output per batch of this
    rank's indices `ids`), replayed in the single-process batches: the same sums in the same order as
    extracting them there. Under torchrun the moment sums are all-reduced and the features gathered on
    rank 0, which returns the metrics (the other ranks None)."""
    from .metrics import FeatureStats

    stats = FeatureStats(extractor.dim)
    feats = [o["features"] for o in outs]
    logits = [o["logits"] for o in outs if "logits" in o]
    for f in feats:
        stats.update(f)
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
    return compute_image_metrics(_Replay(extractor, f_all, l_all), None, chunks, ref=ref, return_features=True,
                                 **common)


class MethodRefs:
    """Numbers shared by every cell of one checkpoint, computed once and cached on disk by content:
    the tokenizer's ceiling (features of the held-out images reconstructed at K = N) and the features of
    unguided samples at K = N per seed (the other end of xlen_distance, and the K = N cell's unguided
    pass). Rank 0 computes, others read."""

    def __init__(self, bundle: Bundle, sha: str, sets: RealSets, bank):
        self.bundle, self.sha, self.sets, self.bank = bundle, sha, sets, bank

    def ceiling(self):
        b, held, bs = self.bundle, self.sets.held_out, self.bundle.cfg.eval.batch_size
        key = {"dataset": held.split.manifest_hash, "split": held.split_name, "count": len(held.idx),
               "subset": held.info["manifest"], "preprocessing": f"reconstructed at K=N={b.n_tokens} by checkpoint {self.sha}"}
        with dist.main_first():
            return reference_stats(key, lambda: (reconstruct(b, x, b.n_tokens) for x in held.batches(bs)),
                                   self.sets.extractor)

    def full_samples_key(self, seed: int) -> dict:
        b, e, s = self.bundle, self.bundle.cfg.eval, self.bundle.cfg.sampler
        return {"dataset": f"samples of checkpoint {self.sha}", "split": f"seed {seed}", "count": e.n_samples,
                "preprocessing": f"unguided samples at K=N={b.n_tokens}, steps={s.steps}, shift={s.shift}",
                "kept": "features and logits"}  # the K = N cell's unguided pass reads both

    def has_full_samples(self, seed: int) -> bool:
        """Whether full_samples(seed) is cached already (the dry run counts it only when not)."""
        return refstats_path(refstats_key(self.full_samples_key(seed), self.sets.extractor)).is_file()

    def full_samples(self, seed: int):
        b, e, s = self.bundle, self.bundle.cfg.eval, self.bundle.cfg.sampler
        key = self.full_samples_key(seed)
        with dist.main_first():
            return reference_stats(key, lambda: generate_batches(b, b.n_tokens, e.n_samples, seed, s, 1.0, e.batch_size,
                                                                 self.bank), self.sets.extractor)


def _vs_reference(r, ref, seed: int, kid_subset_size: int) -> dict:
    """Fréchet distance (fid, fid_bootstrap_std) and KID (kid, kid_std; None without reference features)
    of a cached feature set against the reference: a floor or ceiling pass's output."""
    from .metrics import fid_bootstrap_std, frechet_distance
    from .metrics.kid import kid

    fd = frechet_distance(r.mu, r.sigma, ref.mu, ref.sigma, method=FID_SQRT, features1=r.features)
    out = {"fid": fd, "fid_bootstrap_std": fid_bootstrap_std(r.features, (ref.mu, ref.sigma), seed=seed),
           "kid": None, "kid_std": None}
    if ref.features is not None and r.features is not None:
        out.update(kid(ref.features, r.features, subset_size=kid_subset_size, seed=seed))
    return out


def _selection_count(s, per_scale: int) -> int:
    """Selection samples of the base grid, per_scale of them per scale (this rank's share)."""
    from .guidance import walk_first
    if s.guidance != "search":
        return 0
    return per_scale * (walk_first(s) if s.cfg_search == "walk" else len(s.cfg_scales))


REPRESENTATIONS = {"global merge": "unmerged cluster means (N tokens)",
                   "data-dependent merge": "unmerged per-image cluster means (N tokens)",
                   "truncation": "first K tokens, tail filled by the method (mask token) to N"}


def alignment_representation(bundle: Bundle, k: int) -> str:
    """What alignment.frechet_to_full compares at K, in words (it differs between method families)."""
    z = torch.zeros(1, bundle.n_tokens, bundle.cfg.tokenizer.latent_dim)
    with torch.no_grad():
        m = bundle.method.reconstruct_tokens(z.to(next(bundle.tokenizer.parameters()).device), k).shape[1]
    if m < bundle.n_tokens:
        return "first K tokens, zero-padded to N"
    return REPRESENTATIONS.get(bundle.method.family, "decoder input at K (N tokens)")


def evaluate_cell(bundle: Bundle, sets: RealSets, per_method: MethodRefs, identity: dict, k: int, seed: int, device,
                  shard: SampleShard | None = None):
    """(record, sample grid) on rank 0; (None, None) on the other ranks (they share the sampling).
    shard: where this rank's guided samples (the gFID set) are saved (--save-samples), or None."""
    from .metrics import ReconMeter
    from .metrics.alignment import alignment_metrics
    from .metrics.consistency import xlen_distance
    from .metrics.flops import stage_flops

    cfg, e, s = bundle.cfg, bundle.cfg.eval, bundle.cfg.sampler
    extractor, bank = sets.extractor, per_method.bank
    timing, unavailable, notes = {}, {}, []
    t_cell = time.perf_counter()
    common = dict(kid_subset_size=min(e.kid_subset_size, e.n_samples), seed=seed, fid_method=FID_SQRT)
    main = dist.is_main()

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        timing[name] = time.perf_counter() - t0
        return out

    with dist.main_first():  # rank 0 extracts (or reads) the cached real-image sets, the others read them
        ref, real = sets.reference, sets.held_out_stats
    need = passes()  # the passes the declared metrics name (vltbench.evaluation.metrics.specs.PASSES)
    ceiling = timed("ceiling_s", per_method.ceiling) if "ceiling" in need else None
    full = (timed("full_length_samples_s", lambda: per_method.full_samples(seed))
            if "xlen" in need and k != bundle.n_tokens else None)

    ids = shard_ids(e.n_samples, e.batch_size)  # this rank's whole batches of sample indices

    # the guided pass resumes the unguided pass's trajectories where the CFG interval starts (the
    # steps before it are the same at every scale): kept unless they would take over PREFIX_BYTES
    share = e.n_samples * k * bundle.cfg.tokenizer.latent_dim * 4 <= PREFIX_BYTES
    prefixes: dict | None = {} if share else None

    def samples(scale):
        return generate_batches(bundle, k, e.n_samples, seed, s, scale, e.batch_size, bank, ids=ids,
                                prefixes=prefixes)

    keep: list = []
    held = sets.held_out
    n_rec = len(held.idx)
    rec_ids = shard_ids(n_rec, e.batch_size)
    meter = ReconMeter(device=device)

    def recon_batches():
        start = int(rec_ids[0]) if len(rec_ids) else n_rec
        for real_batch in held.batches(e.batch_size, start, start + len(rec_ids)):
            rec = reconstruct(bundle, real_batch, k)
            meter.update(real_batch, rec)
            yield rec

    work = _selection_count(s, len(shard_ids(s.select_samples, e.batch_size))) + 2 * len(ids) + len(rec_ids)
    with progress.task(f"{bundle.method_name} K={k}: choose guidance, sample, reconstruct, extract features",
                       work) as bar:
        guidance = timed("guidance_search_s", lambda: choose_guidance(bundle, k, seed, sets, bank, bar))
        w = guidance["scale"]
        save = shard.tee if shard is not None else (lambda b: b)
        if SHARE_FULL_LENGTH and k == bundle.n_tokens and w != 1.0:
            plain = timed("full_length_samples_s", lambda: compute_image_metrics(
                extractor, None, per_method.full_samples(seed), ref=ref, return_features=True, **common))
            bar.advance(len(ids))
        else:
            plain = timed("unguided_s", lambda: _image_metrics(
                extractor, _counted(save(_keep_grid(samples(1.0), ids, keep)) if w == 1.0 else samples(1.0), bar),
                ids, e.n_samples, e.batch_size, ref, common))
        if w != 1.0:
            guided = timed("guided_s", lambda: _image_metrics(
                extractor, _counted(save(_keep_grid(samples(w), ids, keep)), bar), ids, e.n_samples, e.batch_size,
                ref, common))
        else:
            guided = plain
            bar.advance(len(ids))
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

    compute = timed("flops_s", lambda: stage_flops(bundle, k, s, w))
    align_set = sets.align_subset
    with torch.no_grad():
        z_val = bundle.tokenizer.encode(to_float(align_set.split.images(align_set.idx)).to(device))
    align = timed("alignment_s", lambda: alignment_metrics(bundle, z_val, k))
    outputs = {"guided": guided, "unguided": plain, "recon": recon, "recon_quality": rec_q}
    if "floor" in need:
        outputs["floor"] = _vs_reference(real, ref, seed, common["kid_subset_size"])
    if "ceiling" in need:
        outputs["ceiling"] = _vs_reference(ceiling, ref, seed, common["kid_subset_size"])
    if "xlen" in need:
        xlen = 0.0 if full is None else xlen_distance(plain["features"], full.features, bundle.num_classes)
        outputs["xlen"] = {"xlen_distance": xlen}
    if "classes" in need and sets.dataset_classes:
        outputs["classes"] = _class_accuracies(sets, guided, recon, bundle.num_classes)
    metrics = record_metrics(outputs)  # every declared metric its pass computed, with its std
    for name, why in {**guided["reasons"], **rec_q.get("reasons", {})}.items():
        if name in metrics and metrics[name] is None:
            unavailable[name] = why
    if "classes" not in outputs:  # absent with the reason, never 0 (folder class indices are no digits)
        why = sets.class_accuracy_unavailable
        unavailable.update(dict.fromkeys(("class_acc", "rclass_acc", "real_class_acc"), why))
    if "xlen" in outputs and outputs["xlen"]["xlen_distance"] is None:
        unavailable["xlen_distance"] = f"needs more than {bundle.num_classes} samples (a same-class partner)"
    notes += [f"{key}: {val}" for key, val in bundle.method.describe().items()]
    label = extractor_label(extractor)
    if guidance["protocol"] == "search" and not guidance["bracketed"]:
        side = "largest" if w == max(guidance["grid"]) else "smallest"
        edge = (f"guidance not bracketed: the chosen scale {w:g} is the {side} of the scales scored "
                f"({guidance['grid']}: {len(guidance['added'])} added, sampler.cfg_extend = {s.cfg_extend}); the "
                "best scale may lie beyond; widen sampler.cfg_scales or raise sampler.cfg_extend")
        notes.append(edge)
        progress.log(f"{bundle.method_name} K={k}: {edge}")
    margin = guidance.get("margin_over_noise")
    if margin is not None and margin < 1:
        notes.append(f"guidance choice within selection noise: the runner-up scale is {margin:.2f} noise std "
                     "behind the chosen one (guidance.score_std)")
    ref_what = (f"{ref.stats.n} stratified {sets.test_split} images" if not sets.adm
                else f"the ADM reference {cfg.eval.reference}")
    notes.append(f"g{label} at CFG scale {w} ({guidance['protocol']}: {guidance['selection']}; interval "
                 f"{list(s.cfg_interval)}); gfid_noguidance at scale 1.0; {e.n_samples} samples vs {ref_what}")
    notes.append(f"r{label}: {n_rec} held-out images ({held.info['how']}) reconstructed at K vs the same reference; "
                 f"real_fid: those images themselves (the floor at this n); rfid_full: reconstructed at K = N "
                 f"(what the tokenizer allows)")
    notes.append("xlen_distance: unguided samples at K vs at K = N with the same seeds and classes, feature "
                 "distance / distance to another same-class sample at N (0 = identical)")
    timing["total_s"] = time.perf_counter() - t_cell
    extra = {}
    if bundle.origin is not None:  # an imported model: labelled in every table, page and check
        from vltbench.models.imported import imported_section, origin_note, record_origin
        extra["origin"] = record_origin(bundle.origin)
        extra["imported"] = imported_section(bundle.origin)
        notes.append(origin_note(bundle.origin))
    record = build_record(identity, _plain(metrics), unavailable=unavailable, compute=_plain(compute),
                          alignment=_plain(align), timing=timing, notes=notes, guidance=_plain(guidance),
                          subsets=sets.describe(), family=bundle.method.family,
                          alignment_representation=alignment_representation(bundle, k),
                          provenance=provenance(str(device), dist.world_size()), config=cfg.resolved(bundle.method_name),
                          **extra)
    grid = grid[:GRID_SAMPLES].transpose(0, 2, 3, 1)
    return record, np.concatenate(list(grid), axis=1)


def _class_accuracies(sets: RealSets, guided: dict, recon: dict, num_classes: int) -> dict:
    """class_acc (samples vs their conditioning class), rclass_acc (held-out reconstructions at K vs
    their label) and real_class_acc (the held-out images themselves), each with its binomial std."""
    from .extractors.mnist_cnn import class_accuracy

    held = sets.held_out
    labels = held.split.labels[held.idx]
    conditioned = sample_labels(torch.arange(len(guided["logits"])), num_classes).numpy()
    out = {}
    for name, logits, y in (("class_acc", guided["logits"], conditioned), ("rclass_acc", recon["logits"], labels),
                            ("real_class_acc", sets.held_out_logits, labels)):
        out[name], out[f"{name}_std"] = class_accuracy(logits, y)
    return out


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
