"""`vltbench run ... --dry-run`: the planned cells, which are done, and what each would cost, before any
work and without writing anything (no training, sampling, feature extraction, record or cache file).

Cost per cell is counted, not guessed: the model work of a cell's passes (guidance search, unguided
and guided samples, reconstructions) from the fvcore counts of an untrained model of the configured
architecture (vltbench.evaluation.metrics.flops), times the counts the config gives. The unguided
samples at K = N, sampled once per checkpoint and seed and cached, count as the K = N cell's unguided pass;
when no K = N cell is planned they count (full_length_gflops) on the first cell to compute of each checkpoint
and seed, unless cached already (xlen_distance needs them). Feature extraction, metric math and the ceiling
(cached on a first cell) are not counted, and a search that grows its grid costs more; the time is FLOPs / a
throughput, by default the best of a 1024^2 fp32 matmul measured here: a lower bound, not a forecast.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from vltbench.core.errors import UserError
from vltbench.core.hashing import sha256_file
from vltbench.models.flow import sampling_nfe

from .plan import SweepSpec

MATMUL = 1024  # the size of the square matmul whose best time sets the default throughput


def measured_matmul_gflops(size: int = MATMUL, rounds: int = 5) -> float:
    """Best fp32 matmul rate in GFLOP/s (2 FLOPs per multiply-add), on this process's CPU threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def cell_gflops(row: dict, cfg, n_recon: int, scale: float | None) -> dict:
    """GFLOPs (fvcore FMAs x 1e-9) of one cell's passes from flops_rows' row for its K.
    scale: the fixed guidance scale, None when searched (every grid scale sampled once)."""
    s, e = cfg.sampler, cfg.eval
    dit, dec, enc = row["dit_forward_gflops"], row["decoder_gflops"], row["encoder_gflops"]

    def per_sample(w):
        return dit * sampling_nfe(s.steps, s.shift, w, s.cfg_interval)[0] + dec

    out = {"search_gflops": 0.0}
    if scale is None:
        out["search_gflops"] = s.select_samples * sum(per_sample(w) for w in s.cfg_scales)
        guided = max(s.cfg_scales)  # guidance on (any scale but 1.0 costs the same)
    else:
        guided = scale
    out["unguided_gflops"] = e.n_samples * per_sample(1.0)
    out["guided_gflops"] = e.n_samples * per_sample(guided) if guided != 1.0 else 0.0
    out["recon_gflops"] = n_recon * (enc + dec)
    out["total_gflops"] = sum(out.values())
    return out


def dry_run(spec: SweepSpec, throughput: float | None = None):
    """A DataFrame, one row per planned cell: method, length, seed, status (done / to compute / needs
    training / unknown), cell_id (None when it cannot be known yet), GFLOPs per pass and in total,
    est_s (seconds at the throughput). attrs: title and notes (what the CLI prints)."""
    import pandas as pd

    from vltbench.data import load_data
    from vltbench.evaluation.metrics.flops import flops_rows
    from vltbench.models.bundle import build_bundle
    from vltbench.training.checkpoints import find_checkpoint

    from .metrics.specs import passes
    from .plan import check_lengths, measurement_spec, plan
    from .store import ResultStore
    from .sweep import MethodRefs

    if throughput is not None and not throughput > 0:
        raise UserError(f"--throughput must be a positive GFLOP/s figure, got {throughput}")
    cfg, notes = spec.cfg, []
    ks = check_lengths(spec.lengths, cfg.tokenizer.n_tokens, cfg.preset)
    ds, why_unknown = None, None
    try:
        ds = load_data(cfg.data)
    except UserError as e:  # a paper preset without its data here: costs still, done-ness unknown
        why_unknown = f"dataset not available ({e})"
    if ds is not None:
        n_classes = ds.num_classes
    else:
        from vltbench.api import dataset_classes
        n_classes = dataset_classes(cfg)[0]
    store = ResultStore(spec.results)
    status, shas = {}, {}
    if ds is not None:
        from .extractors import extractor_for
        from .references import RealSets

        extractor = extractor_for(cfg)
        sets = RealSets(cfg, ds, extractor)
        n_recon = len(sets.held_out.idx)
        mspec = measurement_spec(cfg, extractor, sets)
        for method in spec.methods:
            if spec.checkpoint is not None:
                found = (Path(spec.checkpoint), None)
            else:
                found = find_checkpoint(cfg, method, n_classes)
            if found is None:
                status[method] = "needs training" if spec.train else "no checkpoint"
                continue
            sha = shas[method] = found[1] or sha256_file(found[0])
            cells = plan(SweepSpec(cfg, [method], ks, spec.seeds, spec.results), {method: sha}, ds, mspec, store)
            status.update({(c.method, c.length, c.seed): c for c in cells})
    else:
        n_recon = cfg.eval.n_samples
        notes.append(f"status unknown: {why_unknown}; costs use n_recon = eval.n_samples = {n_recon}")
    s = cfg.sampler
    scale = None if s.guidance == "search" else s.cfg_scale
    if throughput is None:
        throughput, source = measured_matmul_gflops(), f"the best {MATMUL}^2 fp32 matmul measured now"
    else:
        source = "given (--throughput)"
    n = cfg.tokenizer.n_tokens
    full_pass = "xlen" in passes() and n not in ks  # the K = N samples xlen_distance needs, once per seed
    rows = []
    for method in spec.methods:
        bundle = build_bundle(cfg, method, num_classes=n_classes)
        bundle.method.freeze()
        bundle.dits["joint"] = bundle.new_dit()
        full_gflops, refs = 0.0, None
        if full_pass:
            full_gflops = cell_gflops(flops_rows(bundle, [n], s, 1.0)[0], cfg, 0, 1.0)["unguided_gflops"]
            refs = MethodRefs(bundle, shas[method], sets, None) if method in shas else None
        pending = {seed: full_pass and not (refs is not None and refs.has_full_samples(seed)) for seed in spec.seeds}
        for r in flops_rows(bundle, ks, s, max(s.cfg_scales) if scale is None else scale):
            k = r["length"]
            w = s.cfg_scale_per_length.get(k, scale) if scale is not None and s.cfg_scale_per_length else scale
            cost = cell_gflops(r, cfg, n_recon, w)
            for seed in spec.seeds:
                c = status.get((method, k, seed))
                if c is not None:
                    st, cid = ("done" if spec.skips(c) else "to compute"), c.cell_id
                else:
                    st, cid = status.get(method, "unknown"), None
                todo = st != "done"
                extra = full_gflops if todo and pending[seed] else 0.0
                pending[seed] = pending[seed] and not extra
                total = cost["total_gflops"] + extra
                rows.append({"method": method, "length": k, "seed": seed, "status": st, "cell_id": cid, **cost,
                             "full_length_gflops": extra, "total_gflops": total,
                             "est_s": 2 * total / throughput if todo else 0.0})
    df = pd.DataFrame(rows)
    todo = df[df.status != "done"]
    searched = (f"at most {len(s.cfg_scales)} (a walk scores fewer)" if s.cfg_search == "walk"
                else len(s.cfg_scales))
    notes += [f"GFLOPs: fvcore multiply-adds x 1e-9 of the DiT and tokenizer passes ({searched} searched "
              f"scales x {s.select_samples} samples, {cfg.eval.n_samples} unguided + {cfg.eval.n_samples} guided, "
              f"{n_recon} reconstructions)" if scale is None else
              f"GFLOPs: fvcore multiply-adds x 1e-9 of the DiT and tokenizer passes (fixed scale; "
              f"{cfg.eval.n_samples} unguided + guided samples, {n_recon} reconstructions)",
              f"est_s = 2 x GFLOPs / {throughput:.1f} GFLOP/s ({source}): a lower bound; feature extraction, "
              "metric math, grid growth and the sets a first cell caches are not counted",
              f"{len(df) - len(todo)} of {len(df)} cells done; to compute: {todo.total_gflops.sum():.4g} GFLOPs, "
              f">= {todo.est_s.sum():.0f} s; nothing was written (dry run)"]
    if full_pass:
        notes.append(f"full_length_gflops: the {cfg.eval.n_samples} unguided K = N = {n} samples xlen_distance needs "
                     "(no K = N cell is planned), counted on each checkpoint's and seed's first cell to compute; 0 "
                     "where they are cached already")
    if spec.save_samples:
        h = w_ = cfg.data.image_size
        notes.append(f"--save-samples: {cfg.eval.n_samples * h * w_ * 3 / 2**20:.1f} MiB per computed cell")
    df.attrs = {"title": f"dry run: {', '.join(spec.methods)} on {cfg.preset}, K = {','.join(map(str, ks))}, "
                         f"seeds {','.join(map(str, spec.seeds))}", "notes": notes, "throughput_gflops": throughput}
    return df


def print_plan(df) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=df.attrs["title"])
    cols = ["method", "length", "seed", "status", "cell_id", "search_gflops", "unguided_gflops", "guided_gflops",
            "recon_gflops", "full_length_gflops", "total_gflops", "est_s"]
    for c in cols:
        table.add_column("K" if c == "length" else c)
    for r in df.to_dict("records"):
        table.add_row(*[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c] if r[c] is not None else "-")
                        for c in cols])
    Console(width=220).print(table)
    for note in df.attrs["notes"]:
        print(note)
