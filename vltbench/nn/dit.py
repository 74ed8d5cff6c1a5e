"""A class-conditional DiT over a 1D latent token sequence, for any length view.

The length view (vltbench.lengths.LengthView) supplies what differs between lengths and methods:
positional embeddings merged as P_K^T p, and a per-key attention bias log(m_j) (proportional
attention). For truncation P_K selects a prefix and all sizes are 1, so this is the plain DiT.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import AdaLNBlock, init_weights, modulate


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = (t.float() * 1000)[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class DiT(nn.Module):
    def __init__(self, n_tokens: int, in_dim: int, width: int, depth: int, heads: int, num_classes: int,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.n_tokens, self.in_dim, self.num_classes = n_tokens, in_dim, num_classes
        self.x_embed = nn.Linear(in_dim, width)
        self.pos = nn.Parameter(torch.randn(1, n_tokens, width) * 0.02)
        self.t_embed = TimestepEmbedder(width)
        self.y_embed = nn.Embedding(num_classes + 1, width)  # index num_classes = the null class (CFG)
        self.blocks = nn.ModuleList(AdaLNBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, in_dim)
        init_weights(self)
        nn.init.normal_(self.y_embed.weight, std=0.02)
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
