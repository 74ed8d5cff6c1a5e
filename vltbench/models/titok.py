"""The TiTok-family tokenizer (TiTok, One-D-Piece): `tokenizer.arch: titok`, the form the released stage-2
checkpoints have; `vltbench import titok` / `import one-d-piece` load their weights (models/official_titok.py).

Read from the official code (github.com/bytedance/1d-tokenizer modeling/titok.py, modules/blocks.py,
modules/maskgit_vqgan.py, quantizer/quantizer.py; github.com/turingmotors/One-D-Piece, the same files):
- encoder: conv patch embedding, a class token, positions, N learnable latent tokens with their own positions,
  ln_pre, pre-norm transformer blocks (torch MultiheadAttention, exact GELU MLP of ratio 4; timm's
  vision_transformer.Block computes the same), ln_post on the latents, then a 1x1 conv to d channels. The
  released weights were trained with the "legacy" reshape before that conv (upstream is_legacy, One-D-Piece
  issue #3): the (B, N, width) latents are reinterpreted as (B, width, N) in memory, which scrambles tokens
  and channels; `legacy_reshape` reproduces it (False: the fixed order, upstream is_legacy False);
- VQ: nearest entry of the L2-normalised codebook to the L2-normalised latent; the latent passed on is that
  entry (continuous, unit norm): what `encode` returns and what a DiT trains on;
- decoder: the first M <= N latents (One-D-Piece decodes any prefix; TiTok is trained at M = N) embedded
  back to the width with positions, after a class token and one mask token per patch with positions;
  ln_pre, blocks, ln_post on the patch tokens; a 1x1 conv MLP (width -> 2 width, tanh -> `pixel_codes`
  logits) whose softmax mixes the MaskGIT-VQGAN codebook, decoded by the MaskGIT-VQGAN pixel decoder;
- all LayerNorms are torch's default (eps 1e-5); GroupNorms (32 groups) eps 1e-6.
Images are [-1, 1] here and [0, 1] upstream: mapped on the way in and out (decode is not clamped).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

PIXEL_DEFAULTS = {"hidden": 128, "channel_mult": (1, 1, 2, 2, 4), "res_blocks": 2, "z_channels": 256, "codes": 1024}


def titok_block(width: int, heads: int, eps: float) -> nn.Module:
    """timm's ViT block with torch's LayerNorm eps (upstream ResidualAttentionBlock: nn.LayerNorm, qkv bias,
    exact GELU) and vltbench's attention kernel."""
    from timm.models.vision_transformer import Block as TimmBlock

    from .tokenizer import _timm_attention

    return TimmBlock(width, heads, qkv_bias=True, norm_layer=functools.partial(nn.LayerNorm, eps=eps),
                     attn_layer=_timm_attention())


class ResBlock(nn.Module):
    """MaskGIT-VQGAN's residual block: GroupNorm, SiLU, 3x3 conv (no bias), twice. Where the channel count
    changes, upstream adds the 1x1 shortcut conv of the block's OUTPUT (not of its input) to that output;
    the released decoders were trained so, and it is reproduced."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(32, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.nin_shortcut = nn.Conv2d(cout, cout, 1, bias=False) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.nin_shortcut(h) if self.nin_shortcut is not None else x)


class UpLevel(nn.Module):
    def __init__(self, cin: int, cout: int, res_blocks: int, upsample: bool):
        super().__init__()
        self.block = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout) for i in range(res_blocks))
        self.upsample_conv = nn.Conv2d(cout, cout, 3, padding=1) if upsample else None

    def forward(self, x):
        for b in self.block:
            x = b(x)
        if self.upsample_conv is not None:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class PixelDecoder(nn.Module):
    """The MaskGIT-VQGAN decoder (f16 with 5 levels): (B, z, g, g) -> (B, 3, g 2^(levels-1), ...); its
    3x3 "same" convolutions at stride 1 are symmetric padding 1."""

    def __init__(self, hidden: int, channel_mult, res_blocks: int, z_channels: int):
        super().__init__()
        mult = list(channel_mult)
        top = hidden * mult[-1]
        self.conv_in = nn.Conv2d(z_channels, top, 3, padding=1)
        self.mid = nn.ModuleList(ResBlock(top, top) for _ in range(res_blocks))
        self.up = nn.ModuleList(
            UpLevel(hidden * (mult[i + 1] if i + 1 < len(mult) else mult[-1]), hidden * mult[i], res_blocks, i != 0)
            for i in range(len(mult)))
        self.norm_out = nn.GroupNorm(32, hidden * mult[0], eps=1e-6)
        self.conv_out = nn.Conv2d(hidden * mult[0], 3, 3, padding=1)
        self.factor = 2 ** (len(mult) - 1)

    def forward(self, z):
        h = self.conv_in(z)
        for b in self.mid:
            h = b(h)
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class TiTokTokenizer(nn.Module):
    """Same interface as vltbench's Tokenizer: encode (B, 3, H, W) in [-1, 1] -> (B, N, d); decode (B, M, d),
    M <= N -> images (B, 3, H, W)."""

    def __init__(self, image_size: int, patch_size: int, n_tokens: int, latent_dim: int, width: int,
                 enc_depth: int, dec_depth: int, heads: int, codebook_size: int = 4096, legacy_reshape: bool = True,
                 norm_eps: float | None = None, pixel: dict | None = None):
        super().__init__()
        from timm.layers import PatchEmbed

        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        px = dict(PIXEL_DEFAULTS, **(pixel or {}))
        eps = 1e-5 if norm_eps is None else norm_eps
        self.image_size, self.patch_size, self.n_tokens, self.latent_dim = image_size, patch_size, n_tokens, latent_dim
        self.width, self.legacy_reshape = width, legacy_reshape
        self.grid = image_size // patch_size
        n_patches = self.grid ** 2
        self.patch_embed = PatchEmbed(image_size, patch_size, 3, width)
        # class token + its position, patch positions, latent tokens + their positions: one parameter each
        self.enc_prefix = nn.Parameter(torch.zeros(1, 1, width))
        self.enc_pos = nn.Parameter(torch.zeros(1, n_patches, width))
        self.latent_tokens = nn.Parameter(torch.randn(1, n_tokens, width) * width ** -0.5)
        self.enc_ln_pre = nn.LayerNorm(width, eps=eps)
        self.encoder = nn.ModuleList(titok_block(width, heads, eps) for _ in range(enc_depth))
        self.enc_norm = nn.LayerNorm(width, eps=eps)
        self.to_latent = nn.Linear(width, latent_dim)
        self.codebook = nn.Parameter(torch.randn(codebook_size, latent_dim))
        self.from_latent = nn.Linear(latent_dim, width)
        self.dec_prefix = nn.Parameter(torch.zeros(1, 1, width))
        self.mask_tokens = nn.Parameter(torch.zeros(1, n_patches, width))
        self.dec_latent_pos = nn.Parameter(torch.zeros(1, n_tokens, width))
        self.dec_ln_pre = nn.LayerNorm(width, eps=eps)
        self.decoder = nn.ModuleList(titok_block(width, heads, eps) for _ in range(dec_depth))
        self.dec_norm = nn.LayerNorm(width, eps=eps)
        self.to_codes = nn.Sequential(nn.Linear(width, 2 * width), nn.Tanh(), nn.Linear(2 * width, px["codes"]))
        self.pixel_codebook = nn.Parameter(torch.randn(px["codes"], px["z_channels"]))
        self.pixel_decoder = PixelDecoder(px["hidden"], px["channel_mult"], px["res_blocks"], px["z_channels"])
        if self.grid * self.pixel_decoder.factor != image_size:
            raise ValueError(f"the pixel decoder upsamples {self.pixel_decoder.factor}x: grid {self.grid} gives "
                             f"{self.grid * self.pixel_decoder.factor} px, not image_size {image_size}; "
                             f"use patch_size {self.pixel_decoder.factor}")

    def encode_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output before the VQ: (B, N, d) (upstream TiTokEncoder's (B, d, 1, N))."""
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"tokenizer expects {self.image_size}x{self.image_size} images, got {tuple(x.shape[-2:])}")
        b = x.shape[0]
        h = self.patch_embed((x + 1) / 2) + self.enc_pos
        h = torch.cat([self.enc_prefix.expand(b, -1, -1), h, self.latent_tokens.expand(b, -1, -1)], dim=1)
        h = self.enc_ln_pre(h)
        for blk in self.encoder:
            h = blk(h)
        lat = self.enc_norm(h[:, -self.n_tokens:])
        if self.legacy_reshape:  # the (B, N, width) buffer read as (B, width, N): see the module docstring
            lat = lat.reshape(b, self.width, self.n_tokens).transpose(1, 2)
        return self.to_latent(lat)

    def quantize(self, z: torch.Tensor, return_codes: bool = False):
        """Nearest L2-normalised codebook entry to each L2-normalised latent (upstream's distance formula,
        so ties break the same way); returns the entries (B, N, d), unit norm."""
        zf = F.normalize(z.reshape(-1, z.shape[-1]), dim=-1)
        e = F.normalize(self.codebook, dim=-1)
        d = zf.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * zf @ e.T
        codes = d.argmin(1)
        zq = e[codes].reshape(z.shape)
        return (zq, codes.reshape(z.shape[:-1])) if return_codes else zq

    def encode(self, x: torch.Tensor, return_codes: bool = False):
        """Images in [-1, 1] -> the VQ embeddings (B, N, d) (and the codes (B, N))."""
        return self.quantize(self.encode_continuous(x), return_codes)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """The first M latents (B, M, d), M <= N -> images (B, 3, H, W) in [-1, 1] (not clamped)."""
        b, m, _ = tokens.shape
        if m > self.n_tokens:
            raise ValueError(f"decoder takes at most {self.n_tokens} tokens, got {m}")
        lat = self.from_latent(tokens) + self.dec_latent_pos[:, :m]
        h = torch.cat([self.dec_prefix.expand(b, -1, -1), self.mask_tokens.expand(b, -1, -1), lat], dim=1)
        h = self.dec_ln_pre(h)
        for blk in self.decoder:
            h = blk(h)
        h = self.dec_norm(h[:, 1:1 + self.grid ** 2])
        probs = self.to_codes(h).softmax(-1)  # (B, L, codes): a soft mixture of the MaskGIT-VQGAN codebook
        q = (probs @ self.pixel_codebook).transpose(1, 2).reshape(b, -1, self.grid, self.grid)
        return self.pixel_decoder(q) * 2 - 1
