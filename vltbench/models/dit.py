"""A class-conditional DiT over a 1D latent token sequence, for any length view.

The length view (vltbench.models.lengths.LengthView) supplies what differs between lengths and methods:
positional embeddings merged as P_K^T p, and a per-key attention bias log(m_j) (proportional
attention). For truncation P_K selects a prefix and all sizes are 1, so this is the plain DiT.

Two architectures share this class and everything the length view needs (merged positional
embedding, proportional attention bias, per-position guidance in the sampler):
- `dit`: the plain DiT (Peebles & Xie 2023): LayerNorm, GELU MLP, adaLN-Zero;
- `lightning`: the LGM paper's LightningDiT-style generator, read from movinghoon/lgm
  LightningDiT/models/lightningdit_ours.py (force_one_d_seq path): RMSNorm, QK-norm, SwiGLU MLP,
  an RMSNorm final layer, timestep embedded from t in [0, 1] (not 1000 t) with its MLP drawn from
  N(0, 0.02), and a learnable 1D positional embedding merged as P_K^T p (the official merged variant
  uses no RoPE on the 1D sequence, so merged tokens get exactly the merged embedding).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import AdaLNBlock, LightningBlock, init_weights, modulate

ARCHS = ("dit", "lightning")


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int, freq_dim: int = 256, t_scale: float = 1000.0):
        super().__init__()
        self.freq_dim, self.t_scale = freq_dim, t_scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = (t.float() * self.t_scale)[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class DiT(nn.Module):
    def __init__(self, n_tokens: int, in_dim: int, width: int, depth: int, heads: int, num_classes: int,
                 mlp_ratio: float = 4.0, arch: str = "dit", norm_eps: float | None = None):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown DiT arch {arch!r}; choose one of {', '.join(ARCHS)}")
        self.n_tokens, self.in_dim, self.num_classes, self.arch = n_tokens, in_dim, num_classes, arch
        lightning = arch == "lightning"
        self.x_embed = nn.Linear(in_dim, width)
        self.pos = nn.Parameter(torch.randn(1, n_tokens, width) * 0.02)
        self.t_embed = TimestepEmbedder(width, t_scale=1.0 if lightning else 1000.0)
        self.y_embed = nn.Embedding(num_classes + 1, width)  # index num_classes = the null class (CFG)
        if lightning:
            # RMSNorm eps: timm's 1e-6 unless given (upstream's torch.nn.RMSNorm: float32 machine eps)
            eps = 1e-6 if norm_eps is None else norm_eps
            self.blocks = nn.ModuleList(LightningBlock(width, heads, mlp_ratio, norm_eps=eps) for _ in range(depth))
            from timm.layers import RmsNorm
            self.final_norm = RmsNorm(width, eps=eps)  # upstream ModulatedLinear(use_rmsnorm=True)
        else:
            if norm_eps is not None:
                raise ValueError("norm_eps applies to the lightning arch only")
            self.blocks = nn.ModuleList(AdaLNBlock(width, heads, mlp_ratio) for _ in range(depth))
            self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, in_dim)
        init_weights(self)
        nn.init.normal_(self.y_embed.weight, std=0.02)
        if lightning:  # upstream initialize_weights: timestep MLP from N(0, 0.02)
            nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
            nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        for lin in [b.ada[1] for b in self.blocks] + [self.final_ada[1], self.out]:  # adaLN-Zero
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, view=None) -> torch.Tensor:
        """x: (B, K, d) tokens of the view; t: (B,) in [0, 1]; y: (B,) class ids (null_class = none)."""
        pos = self.pos if view is None else view.merge(self.pos)
        bias = None if view is None else view.attention_bias()
        h = self.x_embed(x) + pos
        c = self.t_embed(t) + self.y_embed(y)
        for blk in self.blocks:
            h = blk(h, c, bias)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return self.out(modulate(self.final_norm(h), shift, scale))
