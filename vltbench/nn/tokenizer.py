"""The shared 1D ("TiTok-style") ViT tokenizer backbone.

Encoder: image patches + N learnable latent tokens -> the N latent outputs, projected to d channels
and L2-normalised per token (bounded latents; the DiT side standardises channels, see latents.py).
Decoder: one learnable mask token per patch (with positions) + M <= N latents projected back to
the width, each with its own position embedding (the first M: truncation decodes a prefix).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block, attend, init_weights

ARCHS = ("vit", "timm")


def timm_block(width: int, heads: int) -> nn.Module:
    """timm's ViT block (vision_transformer.Block: qkv bias, LayerNorm eps 1e-6, exact GELU, as the
    official tokenizer's timm ViT-B) with its attention computed by vltbench's `attend`."""
    from timm.layers import LayerNorm
    from timm.models.vision_transformer import Block as TimmBlock

    return TimmBlock(width, heads, qkv_bias=True, norm_layer=LayerNorm, attn_layer=_timm_attention())


@functools.lru_cache(maxsize=None)
def _timm_attention():
    from timm.layers import Attention as TimmAttentionBase

    class TimmAttention(TimmAttentionBase):
        """timm's Attention whose product goes through `attend` (CPU matmul path for short sequences,
        SDPA elsewhere and under a jit trace, where fvcore counts it); bool masks as in SDPA."""

        def forward(self, x, attn_mask=None, is_causal=False):
            b, n, _ = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k = self.q_norm(q), self.k_norm(k)
            x = attend(q, k, v, attn_mask).transpose(1, 2).reshape(b, n, self.attn_dim)
            return self.proj_drop(self.proj(self.norm(x)))

    return TimmAttention


def __getattr__(name):  # timm loads only when the timm arch is used
    if name == "TimmAttention":
        return _timm_attention()
    raise AttributeError(name)


class Tokenizer(nn.Module):
    def __init__(self, image_size: int, patch_size: int, n_tokens: int, latent_dim: int, width: int,
                 enc_depth: int, dec_depth: int, heads: int, causal_latents: bool = False, arch: str = "vit"):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        if arch not in ARCHS:
            raise ValueError(f"unknown tokenizer arch {arch!r}; choose one of {', '.join(ARCHS)}")
        self.arch, self.width = arch, width
        self.image_size, self.patch_size, self.n_tokens, self.latent_dim = image_size, patch_size, n_tokens, latent_dim
        self.grid = image_size // patch_size
        n_patches = self.grid ** 2
        if arch == "timm":
            from timm.layers import PatchEmbed
            self.patch_embed = PatchEmbed(image_size, patch_size, 3, width)  # conv; (B, L, width) out
            block = timm_block
        else:
            self.patch_embed = nn.Linear(3 * patch_size ** 2, width)
            block = Block
        self.enc_pos = nn.Parameter(torch.randn(1, n_patches, width) * 0.02)
        self.latent_tokens = nn.Parameter(torch.randn(1, n_tokens, width) * 0.02)
        self.encoder = nn.ModuleList(block(width, heads) for _ in range(enc_depth))
        self.enc_norm = nn.LayerNorm(width)
        self.to_latent = nn.Linear(width, latent_dim)
        self.from_latent = nn.Linear(latent_dim, width)
        self.dec_latent_pos = nn.Parameter(torch.randn(1, n_tokens, width) * 0.02)
        self.mask_tokens = nn.Parameter(torch.randn(1, n_patches, width) * 0.02)
        self.decoder = nn.ModuleList(block(width, heads) for _ in range(dec_depth))
        self.dec_norm = nn.LayerNorm(width)
        self.to_pixels = nn.Linear(width, 3 * patch_size ** 2)
        init_weights(self)
        # Optional causal attention among latent tokens (FlexTok-style registers): patches see
        # patches, latent i sees all patches and latents <= i.
        if causal_latents:
            L = n_patches + n_tokens
            allowed = torch.ones(L, L, dtype=torch.bool)
            allowed[:n_patches, n_patches:] = False
            allowed[n_patches:, n_patches:] = torch.tril(torch.ones(n_tokens, n_tokens, dtype=torch.bool))
            self.register_buffer("enc_mask", allowed, persistent=False)
        else:
            self.enc_mask = None

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, g = self.patch_size, self.grid
        b = x.shape[0]
        x = x.reshape(b, g, g, 3, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, 3, g * p, g * p)

    def encode(self, x: torch.Tensor, return_patches: bool = False):
        """Images in [-1, 1], (B, 3, H, W) -> latents (B, N, d), unit L2 norm per token.
        return_patches: also the encoder's last hidden states of the patch tokens (B, L, width),
        what a representation-alignment loss projects."""
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"tokenizer expects {self.image_size}x{self.image_size} images, got {tuple(x.shape[-2:])}")
        h = self.patch_embed(x if self.arch == "timm" else self.patchify(x)) + self.enc_pos
        h = torch.cat([h, self.latent_tokens.expand(x.shape[0], -1, -1)], dim=1)
        for blk in self.encoder:
            h = blk(h, self.enc_mask)
        z = F.normalize(self.to_latent(self.enc_norm(h[:, -self.n_tokens:])), dim=-1)
        return (z, h[:, :-self.n_tokens]) if return_patches else z

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Latent tokens (B, M, d) with M <= N (positions 0..M-1) -> images (B, 3, H, W)."""
        b, m, _ = tokens.shape
        if m > self.n_tokens:
            raise ValueError(f"decoder takes at most {self.n_tokens} tokens, got {m}")
        lat = self.from_latent(tokens) + self.dec_latent_pos[:, :m]
        h = torch.cat([self.mask_tokens.expand(b, -1, -1), lat], dim=1)
        for blk in self.decoder:
            h = blk(h)
        return self.unpatchify(self.to_pixels(self.dec_norm(h[:, : self.mask_tokens.shape[1]])))
