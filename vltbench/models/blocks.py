"""Transformer pieces shared by the tokenizer and the DiT (written once, used by every method)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention through scaled_dot_product_attention.

    `bias` is added to the attention logits: shape broadcastable to (B, heads, L, L); merge uses a
    per-key bias log(m_j) (proportional attention); a bool mask restricts attention (causal).

    qk_norm: RMS-normalise queries and keys per head (timm's RmsNorm, learnable scale) before the
    logits, as LightningDiT does (QK-norm); off by default, and then no module is added, so the plain
    DiT's and the tokenizer's state dicts and speed are unchanged."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = False, norm_eps: float = 1e-6):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        if qk_norm:
            from timm.layers import RmsNorm
            self.q_norm, self.k_norm = RmsNorm(dim // heads, eps=norm_eps), RmsNorm(dim // heads, eps=norm_eps)
        else:
            self.q_norm = self.k_norm = None

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return self.proj(attend(q, k, v, bias).transpose(1, 2).reshape(b, n, c))


CPU_MATMUL_ATTENTION_MAX_LEN = 512


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v, exactly what F.scaled_dot_product_attention computes.

    On CPU, for sequences up to CPU_MATMUL_ATTENTION_MAX_LEN, it is written out as two batched
    matmuls: ATen's CPU flash kernel is 1.4-3x slower forward+backward at the tiny preset's
    lengths (4-96 tokens; `python benchmarks/bench.py dit-gflops`, results/PERFORMANCE.md). Elsewhere, and in
    a jit trace (so fvcore's FLOP count sees the one SDPA op it has a handle for), SDPA itself."""
    if q.device.type != "cpu" or q.shape[-2] > CPU_MATMUL_ATTENTION_MAX_LEN or torch.jit.is_tracing():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if bias is not None:
        logits = logits.masked_fill(~bias, float("-inf")) if bias.dtype == torch.bool else logits + bias
    return logits.softmax(-1) @ v


class Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: float = 4.0):
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


class Block(nn.Module):
    """Pre-norm ViT block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift, per sample; one fused kernel over x instead of two."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


class AdaLNBlock(nn.Module):
    """DiT block with adaLN-Zero conditioning (Peebles & Xie, 2023)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        s1, sc1, g1, s2, sc2, g2 = self.ada(c).chunk(6, dim=-1)
        x = torch.addcmul(x, g1.unsqueeze(1), self.attn(modulate(self.norm1(x), s1, sc1), bias))
        return torch.addcmul(x, g2.unsqueeze(1), self.mlp(modulate(self.norm2(x), s2, sc2)))


def swiglu_hidden(dim: int, mlp_ratio: float = 4.0) -> int:
    """LightningDiT's SwiGLU width: int(2/3 * dim * ratio) per branch (so the MLP keeps ~8 dim^2
    parameters like the GELU one). movinghoon/lgm LightningDiT/models/lightningdit_ours.py, Block."""
    return int(2 / 3 * dim * mlp_ratio)


class LightningBlock(nn.Module):
    """LightningDiT block (Yao et al. 2025; the LGM paper's generator): adaLN-Zero modulation around
    RMSNorm (timm RmsNorm, affine as torch.nn.RMSNorm), QK-norm attention through `attend` (so the
    length view's proportional-attention bias and the CPU / fvcore paths are the plain DiT's), and a
    packed SwiGLU MLP (timm SwiGLUPacked: silu(first half) * second half, as upstream's SwiGLUFFN).
    Read from movinghoon/lgm LightningDiT/models/lightningdit_ours.py (Block, use_modulation=True,
    norm_layer=nn.RMSNorm, use_swiglu=True, qk_norm=True)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qk_norm: bool = True, norm_eps: float = 1e-6):
        super().__init__()
        from timm.layers import RmsNorm, SwiGLUPacked
        self.norm1 = RmsNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, qk_norm=qk_norm, norm_eps=norm_eps)
        self.norm2 = RmsNorm(dim, eps=norm_eps)
        self.mlp = SwiGLUPacked(in_features=dim, hidden_features=2 * swiglu_hidden(dim, mlp_ratio))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    forward = AdaLNBlock.forward


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform linears with zero bias, as in ViT/DiT (adaLN zeros are set after this)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
