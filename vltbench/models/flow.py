"""Rectified flow on length views: training loss, Euler sampler with time shift and CFG, EMA.

x_t = t x1 + (1 - t) eps, velocity target x1 - eps, t ~ logit-normal. Noise is drawn in the full
N-token space and pooled by the view (P_K^T eps: variance 1/m_j per merged token); the per-token
loss is weighted by m_j K / sum(m) (`loss_weight`): for a merged view sum(m) = N, so it equals the
full-space MSE of the unmerged prediction; for a prefix view every m_j = 1 and the weight is 1, so
truncation trains exactly the plain DiT. Every view has mean weight 1 (no K is down-weighted).
"""

from __future__ import annotations

import copy

import torch

from .lengths import LengthView


def flow_draws(shape, gen: torch.Generator | None, device, dtype, label_dropout: float = 0.0):
    """The loss's random draws for a batch of `shape` (B, N, d): (full-space noise, t, label-drop mask
    or None). Drawn for a whole global batch and sliced per rank, they do not depend on the sharding."""
    b = shape[0]
    eps_full = torch.randn(shape, generator=gen, device=device, dtype=dtype)
    t = torch.sigmoid(torch.randn(b, generator=gen, device=device, dtype=dtype))
    drop = torch.rand(b, generator=gen, device=device) < label_dropout if label_dropout > 0 else None
    return eps_full, t, drop


def flow_loss(dit, z: torch.Tensor, y: torch.Tensor, view: LengthView, gen: torch.Generator | None = None,
              label_dropout: float = 0.0, draws: tuple | None = None) -> torch.Tensor:
    """z: full-length standardised latents (B, N, d); y: labels (B,). draws: flow_draws(...) for
    this batch (default: drawn here from gen)."""
    eps_full, t, drop = draws if draws is not None else flow_draws(z.shape, gen, z.device, z.dtype, label_dropout)
    if drop is not None:
        y = torch.where(drop, torch.full_like(y, dit.null_class), y)
    x1, eps = view.merge(z), view.merge(eps_full)
    xt = t[:, None, None] * x1 + (1 - t[:, None, None]) * eps
    v = dit(xt, t, y, view)
    return (((v - (x1 - eps)) ** 2).mean(-1) * loss_weight(view, z)).mean()


def loss_weight(view: LengthView, like: torch.Tensor) -> torch.Tensor:
    """Per-token loss weight m_j K / sum(m), (K,) or (B, K): 1 for a prefix, mean 1 for every view.
    (m_j K / N would give a prefix of K tokens the weight K / N: K = N/8 would train 8x weaker.)"""
    sizes = view.size_tensor(like)
    return sizes * view.k / sizes.sum(-1, keepdim=True)


def time_grid(steps: int, shift: float, device=None) -> torch.Tensor:
    """`steps` grid points from noise (0) to data (1), shifted: t' = s t / (1 + (s - 1) t)."""
    t = torch.linspace(0, 1, steps, device=device, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


def sampling_nfe(steps: int, shift: float, cfg_scale: float, cfg_interval) -> tuple[int, int]:
    """(network evaluations per image, of which run with both CFG branches)."""
    ts = time_grid(steps, shift)[:-1]
    lo, hi = cfg_interval
    cfg = int(((ts >= lo) & (ts <= hi)).sum()) if cfg_scale != 1.0 else 0
    return len(ts) + cfg, cfg


def cfg_start(steps: int, shift: float, cfg_interval) -> int:
    """Index of the first Euler step inside the CFG interval: the steps before it are unguided at every
    scale, so samples of one noise at several scales share them (with shift 0.3 and [0.15, 1], 10 of 24)."""
    lo, hi = cfg_interval
    inside = [lo <= float(t) <= hi for t in time_grid(steps, shift)[:-1]]
    return inside.index(True) if any(inside) else len(inside)


@torch.no_grad()
def sample(dit, view: LengthView, y: torch.Tensor, noise_full: torch.Tensor | None, steps: int = 25,
           shift: float = 0.3, cfg_scale: float | torch.Tensor = 1.0, cfg_interval=(0.15, 1.0),
           start: tuple[int, torch.Tensor] | None = None, stop: int | None = None) -> torch.Tensor:
    """Euler ODE from pooled noise to K tokens. CFG per position: cond + (w - 1) / m_j (cond - uncond).
    cfg_scale: one scale, or a float32 tensor (B,) holding w - 1 per row (`guidance_rows`: several
    scales of a search in one trajectory, none of them 1.0). start: (step index, state) to resume from
    (noise_full is then unused); stop: return the state before this step index. The Euler updates are
    the same operations either way, so a resumed trajectory is bit-identical to an uninterrupted one."""
    first, x = start if start is not None else (0, view.merge(noise_full))
    ts = time_grid(steps, shift, x.device)
    sizes = view.size_tensor(x)
    sizes = sizes[..., None] if sizes.dim() == 2 else sizes[None, :, None]
    null = torch.full_like(y, dit.null_class)
    lo, hi = cfg_interval
    rows = torch.is_tensor(cfg_scale)
    guided = rows or cfg_scale != 1.0
    for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        if i < first:
            continue
        if stop is not None and i >= stop:
            break
        tb = t.expand(x.shape[0])
        if guided and lo <= float(t) <= hi:
            both = _doubled(view)
            v_c, v_u = dit(torch.cat([x, x]), torch.cat([tb, tb]), torch.cat([y, null]), both).chunk(2)
            # (w - 1) / m_j; a Python scale divides as sizes.reciprocal() * scale (Tensor.__rtruediv__):
            # the rows of a batched search take the same float32 operations
            coef = sizes.reciprocal() * cfg_scale[:, None, None] if rows else (cfg_scale - 1) / sizes
            v = v_c + coef * (v_c - v_u)
        else:
            v = dit(x, tb, y, view)
        x = x + (t_next - t) * v
    return x


def guidance_rows(scales, per_scale: int, device=None) -> torch.Tensor:
    """w - 1 for each row of `per_scale` rows per scale, computed in float64 and rounded to float32
    once, exactly as `(w - 1) / sizes` rounds a Python scale: rows sample as they would alone."""
    return torch.tensor([w - 1 for w in scales for _ in range(per_scale)], dtype=torch.float32, device=device)


def _doubled(view: LengthView) -> LengthView:
    """The same view for a batch stacked twice (cond + uncond), when the view is per-image."""
    if view.P is None or view.P.dim() == 2:
        return view
    return LengthView(view.n_tokens, view.k, torch.cat([view.P, view.P]), torch.cat([view.sizes, view.sizes]))


class EMA:
    """Exponential moving average of a model's parameters (DiT samples from the EMA weights)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        ema_p = list(self.model.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1 - self.decay)
