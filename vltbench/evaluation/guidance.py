"""The guidance scale of a cell: a bracketed search over a grid of scales (or a fixed scale).

The search scores every scale of the base grid on its own selection samples; the guided scales are
sampled in batched trajectories that share the unguided steps before the CFG interval (the same
images, bit for bit, as one pass per scale: tests/test_batched_search.py).
"""

from __future__ import annotations

import warnings

import numpy as np

from vltbench.core import dist
from vltbench.models.bundle import Bundle

from .generate import generate, generate_batches, generate_scales, shard_ids
from .plan import FID_SQRT, SELECT_SEED_OFFSET, extractor_label
from .references import RealSets

SELECT_BOOTSTRAP = 10  # resamples for the noise of each selection score (cheap on select_samples features)
# rows x K per trajectory of a batched guidance search (before CFG doubles it): K = 4 batches 10 scales
# of 100 samples, K = 32 one (larger DiT batches there were no faster on 2 CPU cores)
SEARCH_TOKENS = 4096


def walk_first(s) -> int:
    """Scales a walk scores in its first step: the grid's middle one and its neighbours."""
    return min(3, len(s.cfg_scales))


def bracket_search(score_fn, grid, max_extra: int, score_all=None, walk: bool = False) -> dict:
    """Score every scale of `grid` with score_fn(w) -> (score, noise std), lower is better, then grow the
    grid (EXTEND_RULE) until the best scale is bracketed or max_extra scales were added.

    Bracketed: a scored scale on each side of the best, or the best is the smallest scale and that is
    at most 1.0. Nothing is searched below 1.0 (w < 1 is anti-guidance, away from the condition), so
    a best at 1.0 is the optimum by definition. margin_over_noise: (runner-up - best) / the std of that
    difference were the two scores independent; they share seeds, so the true noise is smaller and
    the margin a lower bound. Below ~1 the choice is a coin toss. score_all(ws) -> [score_fn(w) for w in
    ws], if given, scores several scales at once (a batched search); added scales go through score_fn.

    walk (WALK_RULE): instead of the whole grid, score its middle scale and that scale's grid neighbours,
    then the unscored neighbours of the best so far, until the best's neighbours are scored. On a curve with
    one minimum over the grid it picks the grid's choice with fewer scales; with two, it may stop at the one
    nearer the middle. The extension beyond the grid's edges is the same."""
    ws0 = [float(w) for w in sorted(grid)]
    batch = score_all if score_all is not None else (lambda ws: [score_fn(w) for w in ws])
    if walk:
        mid = len(ws0) // 2
        steps = [ws0[max(0, mid - 1):mid + 2]]
        scored = dict(zip(steps[0], batch(steps[0])))
    else:
        scored = dict(zip(ws0, batch(ws0)))
    added = []

    def key(w):  # a failed (non-finite) score loses; ties go to the smaller scale
        v = scored[w][0]
        return (v if v is not None and np.isfinite(v) else np.inf, w)

    while walk:
        i = ws0.index(min(scored, key=key))
        todo = [w for w in ws0[max(0, i - 1):i + 2] if w not in scored]
        if not todo:
            break
        steps.append(todo)
        scored.update(zip(todo, batch(todo)))
    while True:
        ws = sorted(scored)
        best = min(ws, key=key)
        up = best == ws[-1]
        down = not up and best == ws[0] and ws[0] > 1.0
        if not (up or down) or len(added) >= max_extra:
            break
        edge, inner = (ws[-1], ws[-2] if len(ws) > 1 else None) if up else (ws[0], ws[1])
        ratio = max(edge, inner) / min(edge, inner) if inner else 1.5  # no ratio (one scale, or 0)
        raw = edge * ratio if up else max(1.0, edge / ratio)
        w = float(f"{raw:.3g}")
        if w == edge:  # rounding undid a tiny step
            w = raw
        if w == edge:  # e.g. a grid of only 0.0: cannot grow
            break
        scored[w] = score_fn(w)
        added.append(w)
    bracketed = not (up or down)
    order = sorted(scored, key=key)
    margin = None
    if len(order) > 1:
        sb, sr = (scored[w][1] for w in order[:2])
        gap = key(order[1])[0] - key(order[0])[0]
        noise = float(np.hypot(sb, sr)) if sb is not None and sr is not None else np.nan
        if noise > 0 and np.isfinite(gap):
            margin = float(gap / noise)
    return {"scale": order[0], "grid": sorted(scored), "added": added, "bracketed": bracketed,
            "unscored": [w for w in ws0 if w not in scored], "walk_steps": steps if walk else None,
            "scores": {w: v[0] for w, v in sorted(scored.items())},
            "score_std": {w: v[1] for w, v in sorted(scored.items())}, "margin_over_noise": margin}


def choose_guidance(bundle: Bundle, k: int, seed: int, sets: RealSets, bank, bar) -> dict:
    """The guidance scale a cell is evaluated at, and how it was chosen (the record's "guidance").

    search: every scale gets the same budget, select_samples samples with seed + SELECT_SEED_OFFSET
    (never the test samples), scored by their Fréchet distance to the selection reference (the split
    that is not the test reference), with its bootstrap std; the lowest wins, and the grid grows until
    the winner is bracketed (bracket_search). The same search for every (method, K) makes guidance
    fair by construction, although per-position CFG (merged views) acts as 1 + (w - 1) / m_j."""
    s, e = bundle.cfg.sampler, bundle.cfg.eval
    if s.guidance == "fixed":
        if s.cfg_scale_per_length and k in s.cfg_scale_per_length:
            w = s.cfg_scale_per_length[k]
            return {"protocol": "fixed", "scale": w, "grid": None, "scores": None,
                    "selection": f"fixed scale {w} at K = {k} (sampler.cfg_scale_per_length): not searched"}
        return {"protocol": "fixed", "scale": s.cfg_scale, "grid": None, "scores": None,
                "selection": f"fixed scale {s.cfg_scale} for every (method, K): not searched"}
    from .sweep import _counted, _image_metrics, _metrics_of_features

    with dist.main_first():
        sel_ref = sets.selection_reference
    n, sel_seed = s.select_samples, seed + SELECT_SEED_OFFSET
    ids = shard_ids(n, e.batch_size)
    common = dict(kid_subset_size=min(e.kid_subset_size, n), seed=seed, fid_method=FID_SQRT,
                  fid_bootstrap=SELECT_BOOTSTRAP)

    counted = [walk_first(s) if s.cfg_search == "walk" else len(s.cfg_scales)]  # grid scales in the work count

    def score_grid(ws):
        """Scales of the base grid from one pass over the samples: per batch, the unguided steps
        before the CFG interval run once for all scales, the guided scales continue in trajectories of up
        to SEARCH_TOKENS rows x K (small-K matmuls get more rows), each scale's images are decoded and
        extracted in the same batches as one pass per scale would, so the scores are the same numbers."""
        bar.grow(len(ids) * max(0, len(ws) - counted[0]))  # a walk's later steps were not in the work count
        counted[0] = max(0, counted[0] - len(ws))
        guided = [w for w in ws if w != 1.0]
        per = max(1, SEARCH_TOKENS // (e.batch_size * k))
        groups = [guided[i:i + per] for i in range(0, len(guided), per)]
        outs, size = {w: [] for w in ws}, None
        for start in range(0, len(ids), e.batch_size):
            bid, prefixes = ids[start:start + e.batch_size], {}
            images = {1.0: generate(bundle, k, bid, sel_seed, s, 1.0, bank, prefixes)} if 1.0 in ws else {}
            for g in groups:
                images.update(zip(g, generate_scales(bundle, k, bid, sel_seed, s, g, bank, prefixes)))
            for w in ws:
                size = tuple(images[w].shape[-2:])
                outs[w].append(sets.extractor(images[w]))
                bar.advance(len(bid))
        scores = []
        for w in ws:
            with warnings.catch_warnings():  # few samples bias every scale alike: only their order is used
                warnings.simplefilter("ignore", UserWarning)
                out = _metrics_of_features(sets.extractor, outs[w], size, ids, n,
                                           e.batch_size, sel_ref, common)
            scores.append(dist.broadcast_object((out["fid"], out["fid_bootstrap_std"]) if out is not None else None))
        return scores

    def score(w):
        if w not in s.cfg_scales:
            bar.grow(len(ids))  # an added scale: its samples were not in the cell's work count
        with warnings.catch_warnings():  # few samples bias every scale alike: only their order is used
            warnings.simplefilter("ignore", UserWarning)
            out = _image_metrics(sets.extractor, _counted(generate_batches(bundle, k, n, sel_seed, s, w, e.batch_size,
                                                                           bank, ids=ids), bar),
                                 ids, n, e.batch_size, sel_ref, common)
        # rank 0 scores; every rank takes its numbers, so all ranks grow the grid alike
        return dist.broadcast_object((out["fid"], out["fid_bootstrap_std"]) if out is not None else None)

    walk = s.cfg_search == "walk"
    r = bracket_search(score, s.cfg_scales, s.cfg_extend, score_grid, walk=walk)
    sub = sets.selection_subset
    how = (f"walked from {s.cfg_scales[len(s.cfg_scales) // 2]:g} over the grid ({len(r['unscored'])} of "
           f"{len(s.cfg_scales)} scales not scored); " if walk else "")
    return {"protocol": "search", "scale": r["scale"], "grid": r["grid"], "added": r["added"],
            "scores": {f"{w:g}": v for w, v in r["scores"].items()},
            "score_std": {f"{w:g}": v for w, v in r["score_std"].items()},
            "bracketed": r["bracketed"], "margin_over_noise": r["margin_over_noise"],
            **({"search": "walk", "unscored": r["unscored"], "walk_steps": r["walk_steps"]} if walk else {}),
            "selection": f"{how}{n} samples per scale (seed {sel_seed}) vs {len(sub.idx)} stratified {sub.split_name} "
                         f"images; lowest {extractor_label(sets.extractor)} wins; {len(r['added'])} scales added "
                         f"(at most {s.cfg_extend}) to bracket it"}
