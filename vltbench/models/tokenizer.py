"""The shared 1D ("TiTok-style") ViT tokenizer backbone.

Encoder: image patches + N learnable latent tokens -> the N latent outputs, projected to d channels
and L2-normalised per token (bounded latents; the DiT side standardises channels, see latents.py).
Decoder: one learnable mask token per patch (with positions) + M <= N latents projected back to
the width, each with its own position embedding (the first M: truncation decodes a prefix).

Options that make the `timm` arch the official LGM tokenizer (movinghoon/lgm tokenizer/modelling;
`vltbench import lgm` loads its weights), all off by default so existing checkpoints are unchanged:
- prefix_token: one learnable token (the ViT's cls token with its position) first in the encoder's and
  the decoder's sequence; it only takes part in attention;
- quantizer="softvq": the L2-normalised latents of `codebooks` contiguous segments of N / codebooks
  positions are replaced by softmax(z . E / temperature) . E over the segment's L2-normalised codebook E
  (upstream SoftVectorQuantizer with l2_norm; no entropy loss is trained here);
- norm_eps: eps of the encoder's and decoder's final LayerNorm (None: torch's 1e-5; upstream 1e-6);
- pixel_order: channel order of the pixel head's outputs within a patch, "cpq" (ours) or "pqc" (upstream
  ToPixel.unpatchify).

`refine` (vltbench's own, off by default): a residual 3x3-conv head in pixel space after unpatchify.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block, attend, init_weights

ARCHS = ("vit", "timm")
PIXEL_ORDERS = ("cpq", "pqc")


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
                 enc_depth: int, dec_depth: int, heads: int, causal_latents: bool = False, arch: str = "vit",
                 prefix_token: bool = False, quantizer: str = "none", codebooks: int = 4, codebook_size: int = 8192,
                 temperature: float = 0.07, norm_eps: float | None = None, pixel_order: str = "cpq",
                 refine: int = 0):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        if arch not in ARCHS:
            raise ValueError(f"unknown tokenizer arch {arch!r}; choose one of {', '.join(ARCHS)}")
        if pixel_order not in PIXEL_ORDERS:
            raise ValueError(f"unknown pixel_order {pixel_order!r}; choose one of {', '.join(PIXEL_ORDERS)}")
        if quantizer not in ("none", "softvq"):
            raise ValueError(f"unknown quantizer {quantizer!r}; choose none or softvq")
        if quantizer == "softvq" and n_tokens % codebooks:
            raise ValueError(f"softvq: n_tokens {n_tokens} is not a multiple of codebooks {codebooks}")
        self.arch, self.width, self.pixel_order, self.temperature = arch, width, pixel_order, temperature
        if causal_latents and prefix_token:
            raise ValueError("causal latents and a prefix token cannot be combined")
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
        eps = {} if norm_eps is None else {"eps": norm_eps}
        self.enc_norm = nn.LayerNorm(width, **eps)
        self.to_latent = nn.Linear(width, latent_dim)
        self.from_latent = nn.Linear(latent_dim, width)
        self.dec_latent_pos = nn.Parameter(torch.randn(1, n_tokens, width) * 0.02)
        self.mask_tokens = nn.Parameter(torch.randn(1, n_patches, width) * 0.02)
        self.decoder = nn.ModuleList(block(width, heads) for _ in range(dec_depth))
        self.dec_norm = nn.LayerNorm(width, **eps)
        self.to_pixels = nn.Linear(width, 3 * patch_size ** 2)
        if prefix_token:  # created only when asked: the default state dict stays as it was
            self.enc_prefix = nn.Parameter(torch.randn(1, 1, width) * 0.02)
            self.dec_prefix = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        else:
            self.enc_prefix = self.dec_prefix = None
        # created only when asked (the default state dict stays as it was); the last conv starts at zero,
        # so at step 0 the head is the identity and the decoder is the plain ViT one
        self.refine = None if not refine else nn.Sequential(
            nn.Conv2d(3, refine, 3, padding=1), nn.GELU(), nn.Conv2d(refine, refine, 3, padding=1), nn.GELU(),
            nn.Conv2d(refine, 3, 3, padding=1))
        if quantizer == "softvq":
            self.codebook = nn.Parameter(F.normalize(torch.randn(codebooks, codebook_size, latent_dim), dim=-1))
        else:
            self.codebook = None
        init_weights(self)
        if self.refine is not None:
            nn.init.zeros_(self.refine[-1].weight)
            nn.init.zeros_(self.refine[-1].bias)
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
        if self.pixel_order == "pqc":
            x = x.reshape(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4)
        else:
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
        lead = 0
        if self.enc_prefix is not None:
            h, lead = torch.cat([self.enc_prefix.expand(x.shape[0], -1, -1), h], dim=1), 1
        for blk in self.encoder:
            h = blk(h, self.enc_mask)
        z = F.normalize(self.to_latent(self.enc_norm(h[:, -self.n_tokens:])), dim=-1)
        if self.codebook is not None:
            z = self.quantize(z)
        return (z, h[:, lead:-self.n_tokens]) if return_patches else z

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """SoftVQ: each of the `codebooks` contiguous segments of positions mixes its L2-normalised
        codebook with softmax(z . E / temperature) (z already unit-norm). As upstream, the codebook
        trains through the mixture only (detached in the logits)."""
        b, n, d = z.shape
        c = self.codebook.shape[0]
        e = F.normalize(self.codebook, dim=-1)
        zs = z.reshape(b, c, n // c, d)
        probs = torch.einsum("bcnd,ckd->bcnk", zs, e.detach()).div(self.temperature).softmax(-1)
        return torch.einsum("bcnk,ckd->bcnd", probs, e).reshape(b, n, d)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Latent tokens (B, M, d) with M <= N (positions 0..M-1) -> images (B, 3, H, W)."""
        b, m, _ = tokens.shape
        if m > self.n_tokens:
            raise ValueError(f"decoder takes at most {self.n_tokens} tokens, got {m}")
        lat = self.from_latent(tokens) + self.dec_latent_pos[:, :m]
        h = torch.cat([self.mask_tokens.expand(b, -1, -1), lat], dim=1)
        lead = 0
        if self.dec_prefix is not None:
            h, lead = torch.cat([self.dec_prefix.expand(b, -1, -1), h], dim=1), 1
        for blk in self.decoder:
            h = blk(h)
        x = self.unpatchify(self.to_pixels(self.dec_norm(h[:, lead: lead + self.mask_tokens.shape[1]])))
        return x if self.refine is None else x + self.refine(x)
