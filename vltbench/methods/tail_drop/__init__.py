"""tail-drop — One-D-Piece-style tail token drop. See README.md beside this file."""

from __future__ import annotations

import torch

from vltbench.method import TruncationMethod


class TailDropMethod(TruncationMethod):
    name = "tail-drop"
    family = "truncation"
    description = "One-D-Piece-style tail token drop: one K per batch, the decoder sees only the first K"
    own_tokenizer_schedule = "One-D-Piece tail drop: one K per batch, uniform in 1..N"

    def train_tokens(self, z, gen):
        k = self.sample_length(gen) if self.shared_schedule else int(torch.randint(1, self.n_tokens + 1, (1,), generator=gen))
        return z[:, :k], {}

    def expand(self, zk, view):
        return zk
