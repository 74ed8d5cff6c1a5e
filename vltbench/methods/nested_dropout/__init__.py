"""nested-dropout — FlexTok-style ordered truncation. See README.md beside this file."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vltbench.method import NoOptions, TruncationMethod


class NestedDropoutOptions(NoOptions):
    schedule: Literal["uniform", "pow2", "mixed"] = "mixed"  # how keep_k is drawn per sample
    causal: bool = True  # causal attention among the latent tokens in the encoder


class NestedDropoutMethod(TruncationMethod):
    name = "nested-dropout"
    family = "truncation"
    description = "FlexTok-style nested dropout: ordered tokens, tail replaced by a learned mask token"
    Options = NestedDropoutOptions
    own_tokenizer_schedule = "FlexTok nested dropout: keep_k per sample (methods.nested-dropout.schedule)"

    def __init__(self, n_tokens, latent_dim, options, train_lengths, train_probs):
        super().__init__(n_tokens, latent_dim, options, train_lengths, train_probs)
        self.mask_token = nn.Parameter(torch.randn(latent_dim) * 0.02)
        self.register_buffer("pow2", torch.tensor(sorted({min(2 ** i, n_tokens) for i in range(n_tokens.bit_length())})))

    def tokenizer_kwargs(self):
        return {"causal_latents": self.options.causal}

    def sample_keep(self, b: int, gen: torch.Generator) -> torch.Tensor:
        """keep_k per sample: uniform over 1..N, uniform over powers of two, or a 50/50 mix."""
        uniform = torch.randint(1, self.n_tokens + 1, (b,), generator=gen)
        pow2 = self.pow2.cpu()[torch.randint(len(self.pow2), (b,), generator=gen)]
        if self.options.schedule == "uniform":
            return uniform
        if self.options.schedule == "pow2":
            return pow2
        return torch.where(torch.rand(b, generator=gen) < 0.5, uniform, pow2)

    def fill(self, z: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        dropped = torch.arange(self.n_tokens, device=z.device)[None, :] >= keep.to(z.device)[:, None]
        return torch.where(dropped[..., None], self.mask_token.to(z.dtype), z)

    def tokenizer_schedule_text(self):
        text = super().tokenizer_schedule_text()
        return text if self.shared_schedule else f"{text} = {self.options.schedule}"

    def train_tokens(self, z, gen):
        if self.shared_schedule:
            return self.fill(z, torch.full((z.shape[0],), self.sample_length(gen))), {}
        return self.fill(z, self.sample_keep(z.shape[0], gen)), {}

    def expand(self, zk, view):
        b, k, d = zk.shape
        return torch.cat([zk, self.mask_token.to(zk.dtype).expand(b, self.n_tokens - k, d)], dim=1)
