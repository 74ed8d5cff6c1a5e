"""The shared 1D ("TiTok-style") ViT tokenizer backbone.

Encoder: image patches + N learnable latent tokens -> the N latent outputs, projected to d channels
and L2-normalised per token (bounded latents; the DiT side standardises channels, see latents.py).
Decoder: one learnable mask token per patch (with positions) + M <= N latents projected back to
the width, each with its own position embedding (the first M: truncation decodes a prefix).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block, init_weights


class Tokenizer(nn.Module):
    def __init__(self, image_size: int, patch_size: int, n_tokens: int, latent_dim: int, width: int,
                 enc_depth: int, dec_depth: int, heads: int, causal_latents: bool = False):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size, self.patch_size, self.n_tokens, self.latent_dim = image_size, patch_size, n_tokens, latent_dim
        self.grid = image_size // patch_size
        n_patches = self.grid ** 2
        self.patch_embed = nn.Linear(3 * patch_size ** 2, width)
        self.enc_pos = nn.Parameter(torch.randn(1, n_patches, width) * 0.02)
        self.latent_tokens = nn.Parameter(torch.randn(1, n_tokens, width) * 0.02)
        self.encoder = nn.ModuleList(Block(width, heads) for _ in range(enc_depth))
        self.enc_norm = nn.LayerNorm(width)
        self.to_latent = nn.Linear(width, latent_dim)
        self.from_latent = nn.Linear(latent_dim, width)
        self.dec_latent_pos = nn.Parameter(torch.randn(1, n_tokens, width) * 0.02)
        self.mask_tokens = nn.Parameter(torch.randn(1, n_patches, width) * 0.02)
        self.decoder = nn.ModuleList(Block(width, heads) for _ in range(dec_depth))
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

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], (B, 3, H, W) -> latents (B, N, d), unit L2 norm per token."""
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"tokenizer expects {self.image_size}x{self.image_size} images, got {tuple(x.shape[-2:])}")
        h = self.patch_embed(self.patchify(x)) + self.enc_pos
        h = torch.cat([h, self.latent_tokens.expand(x.shape[0], -1, -1)], dim=1)
        for blk in self.encoder:
            h = blk(h, self.enc_mask)
        z = self.to_latent(self.enc_norm(h[:, -self.n_tokens:]))
        return F.normalize(z, dim=-1)

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
