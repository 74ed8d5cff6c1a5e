"""The method interface: what a variable-length method provides; the harness does the rest.

A method is an nn.Module attached to the shared tokenizer. It owns only what is unique to it:
- `train_tokens(z, gen)`: the length mechanism during tokenizer training (full latents in,
  decoder input and auxiliary losses out);
- `view(k, z=None)`: the LengthView its generator sees at length K (z only for data-dependent ones);
- `expand(zk, view)`: K generated/merged tokens -> what the decoder receives;
- optional `freeze()` after tokenizer training (e.g. merge builds its frozen merge table) and
  `generation_view(k, n, gen, bank)` when the view at sampling time needs more than K.
Its learnable parameters train with the tokenizer; its buffers are saved in the checkpoint.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from .lengths import LengthView, prefix_view


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Method(nn.Module):
    name: ClassVar[str]
    family: ClassVar[str]  # "global merge" | "truncation" | "data-dependent merge" | ...
    description: ClassVar[str]  # one line, shown by `vltbench methods`
    Options: ClassVar[type[BaseModel]] = NoOptions
    data_dependent: ClassVar[bool] = False  # True when view() needs the image's latents
    # How the tokenizer stage draws lengths, in words, for records (each built-in follows its own paper).
    own_tokenizer_schedule: ClassVar[str] = "K per step from the shared lengths schedule"

    def __init__(self, n_tokens: int, latent_dim: int, options: BaseModel, train_lengths: list[int],
                 train_probs: list[float]):
        super().__init__()
        self.n_tokens, self.latent_dim, self.options = n_tokens, latent_dim, options
        self.train_lengths, self.train_probs = list(train_lengths), list(train_probs)
        # "own": the tokenizer stage draws lengths as the method's paper does; "shared": every method
        # draws one K per step from the shared `lengths` schedule (the ablation that equalises it).
        # Set by the harness from `lengths.tokenizer_schedule`.
        self.tokenizer_schedule = "own"
        self.tokenizer_weights = "raw weights (the tokenizer keeps no EMA)"  # or its EMA: set by the harness
        self.warm_start = (0, 0)  # (tokenizer.warm_start, tokenizer.steps): set by the harness
        self.encoder_start = "random init"  # or the pretrained ViT it starts from: set by the harness

    @property
    def shared_schedule(self) -> bool:
        return self.tokenizer_schedule == "shared"

    def tokenizer_schedule_text(self) -> str:
        """What records say about how this method's tokenizer was trained across lengths."""
        if self.shared_schedule:
            return f"shared: one K per step from K={self.train_lengths} with p={self.train_probs}"
        return f"own: {self.own_tokenizer_schedule}"

    # --- tokenizer side ----------------------------------------------------------------------
    def train_tokens(self, z: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def tokenizer_kwargs(self) -> dict:
        """Extra backbone options this method needs (e.g. causal latent attention)."""
        return {}

    def freeze(self) -> None:
        """Called once after tokenizer training, before latents are cached."""

    # --- generator side ------------------------------------------------------------------------
    def view(self, k: int, z: torch.Tensor | None = None) -> LengthView:
        return prefix_view(k, self.n_tokens)

    def expand(self, zk: torch.Tensor, view: LengthView) -> torch.Tensor:
        raise NotImplementedError

    def generation_view(self, k: int, sample_ids: torch.Tensor, seed: int, bank: torch.Tensor | None) -> LengthView:
        """The view used to sample `sample_ids`; data-independent methods ignore ids and bank."""
        return self.view(k)

    def reconstruct_tokens(self, z: torch.Tensor, k: int) -> torch.Tensor:
        """Decoder input that reconstructs full latents z at length K (rFID, reconstructions)."""
        view = self.view(k, z)  # the view checks K (prefix_view, or the method's own check_length)
        return self.expand(view.merge(z), view)

    def sample_length(self, gen: torch.Generator) -> int:
        """One K from the shared training schedule (the same set and frequencies for every method)."""
        i = torch.multinomial(torch.tensor(self.train_probs), 1, generator=gen).item()
        return self.train_lengths[i]

    def describe(self) -> dict:
        """Facts a result record carries about how lengths are produced (e.g. tome's borrowed pattern).
        Subclasses extend it (`{**super().describe(), ...}`); the tokenizer's K schedule is always stated."""
        warm, steps = self.warm_start
        start = (f"shared warm start: steps 1-{warm} of {steps} a plain autoencoder at K = N (every method "
                 f"alike), then the length mechanism" if warm else "none: the length mechanism from step 1")
        return {"tokenizer_length_schedule": self.tokenizer_schedule_text(), "tokenizer_warm_start": start,
                "tokenizer_encoder_start": self.encoder_start}


class TruncationMethod(Method):
    """Shared generator side of prefix truncation: the DiT models the first K tokens only."""

    def view(self, k: int, z: torch.Tensor | None = None) -> LengthView:
        return prefix_view(k, self.n_tokens)
