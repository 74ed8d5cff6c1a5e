"""Sampling and reconstruction at length K, streamed in batches.

A sample's noise and class label depend only on (seed, sample index): the set of samples is the
same whatever the batch size or number of processes. Under torchrun each process takes a contiguous
run of whole batches (`shard_ids`), so every batch, and hence every image, is the one a single
process computes with the same batch size."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from vltbench.core import dist
from vltbench.core.config import SamplerCfg
from vltbench.core.device import to_float, to_uint8
from vltbench.models.bundle import Bundle
from vltbench.models.flow import cfg_start, guidance_rows, sample
from vltbench.models.lengths import LengthView

SEED_STRIDE = 1_000_003


def sample_noise(ids: torch.Tensor, seed: int, n_tokens: int, dim: int) -> torch.Tensor:
    """Full-space noise (len(ids), N, d), one generator per sample index."""
    out = torch.empty(len(ids), n_tokens, dim)
    for row, i in enumerate(ids.tolist()):
        out[row] = torch.randn(n_tokens, dim, generator=torch.Generator().manual_seed(seed * SEED_STRIDE + i))
    return out


def sample_labels(ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Balanced classes: sample i has class i mod C (as the ADM protocol's 50 per class)."""
    return ids % num_classes


def _prefix(bundle: Bundle, k: int, ids: torch.Tensor, seed: int, sampler: SamplerCfg, view, y,
            prefixes: dict | None):
    """(step index, state) where guidance starts, for these samples: computed once and kept in
    `prefixes` (None: not kept, the trajectory starts from the noise)."""
    if prefixes is None:
        return None
    key = (k, seed, int(ids[0]), len(ids))
    if key not in prefixes:
        device = next(bundle.tokenizer.parameters()).device
        noise = sample_noise(ids, seed, bundle.n_tokens, bundle.cfg.tokenizer.latent_dim).to(device)
        i0 = cfg_start(sampler.steps, sampler.shift, sampler.cfg_interval)
        prefixes[key] = (i0, sample(bundle.dit_for(k), view, y, noise, sampler.steps, sampler.shift, 1.0,
                                    sampler.cfg_interval, stop=i0))
    return prefixes[key]


@torch.no_grad()
def generate(bundle: Bundle, k: int, ids: torch.Tensor, seed: int, sampler: SamplerCfg, cfg_scale: float,
             bank: torch.Tensor | None = None, prefixes: dict | None = None) -> torch.Tensor:
    """uint8 images (len(ids), 3, H, W) for the given sample indices. prefixes: a dict shared by calls
    for the same samples at other scales: the unguided steps before the CFG interval run once."""
    device = next(bundle.tokenizer.parameters()).device
    dit = bundle.dit_for(k)
    y = sample_labels(ids, bundle.num_classes).to(device)
    view = bundle.method.generation_view(k, ids, seed, bank).to(device)
    start = _prefix(bundle, k, ids, seed, sampler, view, y, prefixes)
    noise = None if start else sample_noise(ids, seed, bundle.n_tokens, bundle.cfg.tokenizer.latent_dim).to(device)
    zk = sample(dit, view, y, noise, sampler.steps, sampler.shift, cfg_scale, sampler.cfg_interval, start=start)
    tokens = bundle.method.expand(bundle.destandardise(zk), view)
    return to_uint8(bundle.tokenizer.decode(tokens)).cpu()


@torch.no_grad()
def generate_scales(bundle: Bundle, k: int, ids: torch.Tensor, seed: int, sampler: SamplerCfg, scales,
                    bank: torch.Tensor | None = None, prefixes: dict | None = None) -> list[torch.Tensor]:
    """generate(...) of the same samples at every guidance scale in `scales` (none 1.0), one trajectory:
    each scale's rows get the same noise and labels, and each scale's latents are decoded as its own
    batch, so the images are those of one generate call per scale (up to the DiT's matmuls on a larger
    batch: tests/test_batched_search.py checks them equal). Small-K DiT matmuls get len(scales) x more rows."""
    if not scales or 1.0 in scales:
        raise ValueError(f"generate_scales takes guided scales only, got {list(scales)}")
    device = next(bundle.tokenizer.parameters()).device
    dit, r, b = bundle.dit_for(k), len(scales), len(ids)
    y = sample_labels(ids, bundle.num_classes).to(device)
    view = bundle.method.generation_view(k, ids, seed, bank).to(device)
    i0, x0 = _prefix(bundle, k, ids, seed, sampler, view, y, {} if prefixes is None else prefixes)
    many = view if view.P is None or view.P.dim() == 2 else LengthView(
        view.n_tokens, view.k, view.P.repeat(r, 1, 1), view.sizes.repeat(r, 1))
    zk = sample(dit, many, y.repeat(r), None, sampler.steps, sampler.shift, guidance_rows(scales, b, device),
                sampler.cfg_interval, start=(i0, x0.repeat(r, 1, 1)))
    out = []
    for i in range(r):
        tokens = bundle.method.expand(bundle.destandardise(zk[i * b:(i + 1) * b]), view)
        out.append(to_uint8(bundle.tokenizer.decode(tokens)).cpu())
    return out


def shard_ids(n: int, batch_size: int) -> torch.Tensor:
    """This process's sample indices among 0..n-1: whole batches of `batch_size`, contiguous, disjoint
    across processes and together covering every index once (all of them in a single process)."""
    lo, hi = dist.shard_bounds(n, batch_size)
    return torch.arange(lo, hi)


def generate_batches(bundle: Bundle, k: int, n: int, seed: int, sampler: SamplerCfg, cfg_scale: float,
                     batch_size: int, bank: torch.Tensor | None = None, ids: torch.Tensor | None = None,
                     prefixes: dict | None = None) -> Iterator[torch.Tensor]:
    ids = torch.arange(n) if ids is None else ids
    for s in range(0, len(ids), batch_size):
        yield generate(bundle, k, ids[s:s + batch_size], seed, sampler, cfg_scale, bank, prefixes)


@torch.no_grad()
def reconstruct(bundle: Bundle, images_uint8: np.ndarray | torch.Tensor, k: int) -> torch.Tensor:
    device = next(bundle.tokenizer.parameters()).device
    x = to_float(images_uint8).to(device)
    z = bundle.tokenizer.encode(x)
    return to_uint8(bundle.tokenizer.decode(bundle.method.reconstruct_tokens(z, k))).cpu()
