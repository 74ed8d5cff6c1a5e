"""merge — learnable global merging (LGM, Lee & Hong, ICML 2026). See README.md beside this file."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vltbench.lengths import LengthView, average_linkage, all_cuts, check_length, cut_labels, view_from_labels
from vltbench.method import Method, NoOptions


class MergeOptions(NoOptions):
    embed_dim: int = 32  # m: width of the global embedding table (one row per latent position)
    # Merges stay inside `blocks` contiguous blocks of N/blocks positions. 1 = global, the default:
    # upstream's 4 only mirrors SoftVQ's 4 codebook segments, which this backbone does not have (and at
    # K = blocks it makes the grouping fixed contiguous pooling, where the learned table cannot matter).
    blocks: int = 1
    noise: float = 0.1  # exploration noise on the similarity during training
    tau: float = 0.1  # temperature of the straight-through soft assignment
    align_weight: float = 0.25
    align_margin: float = 0.25


class MergeMethod(Method):
    name = "merge"
    family = "global merge"
    description = "learnable global merging: one learned, data-independent grouping per K; DiT on merged tokens"
    Options = MergeOptions

    def __init__(self, n_tokens, latent_dim, options, train_lengths, train_probs):
        super().__init__(n_tokens, latent_dim, options, train_lengths, train_probs)
        if n_tokens % options.blocks:
            raise ValueError(f"methods.merge.blocks={options.blocks} must divide n_tokens={n_tokens}")
        self.embed = nn.Parameter(F.normalize(torch.randn(n_tokens, options.embed_dim), dim=-1))
        block = torch.arange(n_tokens) // (n_tokens // options.blocks)
        self.register_buffer("same_block", block[:, None] == block[None, :], persistent=False)
        # The frozen merge table: row K-1 = cluster label of each position at K clusters (-1 = not frozen).
        self.register_buffer("table", torch.full((n_tokens, n_tokens), -1, dtype=torch.long))

    def similarity(self, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        e_hat = F.normalize(self.embed, dim=-1)
        sim = (e_hat @ e_hat.T).detach().float().cpu()
        if gen is not None and self.options.noise > 0:
            sim = sim + torch.randn(sim.shape, generator=gen).clamp(-1, 1) * self.options.noise
        sim = torch.where(self.same_block.cpu(), sim, torch.full_like(sim, -100.0))
        return e_hat, sim

    def cluster(self, k: int, gen: torch.Generator | None = None) -> torch.Tensor:
        _, sim = self.similarity(gen)
        return torch.from_numpy(cut_labels(average_linkage(sim.numpy()), self.n_tokens, k))

    # --- tokenizer side -------------------------------------------------------------------------
    def train_tokens(self, z, gen):
        k = self.sample_length(gen)
        if k == self.n_tokens:
            return z, {"align": z.new_zeros(())}
        e_hat, sim = self.similarity(gen)
        labels = torch.from_numpy(cut_labels(average_linkage(sim.numpy()), self.n_tokens, k)).to(z.device)
        gamma = F.one_hot(labels, k).to(z.dtype)  # (N, K)
        # Straight-through: forward uses the hard grouping, gradients reach e through the soft one.
        proto = F.normalize(gamma.T @ e_hat / gamma.sum(0)[:, None], dim=-1).detach()
        soft = torch.softmax(e_hat @ proto.T / self.options.tau, dim=-1)
        g_st = gamma + soft - soft.detach()
        W = (g_st / g_st.sum(0)) @ g_st.T  # (N, N): position i <- mean of its cluster
        merged = torch.einsum("ik,bid->bkd", W, z)
        return merged, {"align": self.options.align_weight * self.alignment_loss(z, e_hat)}

    def alignment_loss(self, z: torch.Tensor, e_hat: torch.Tensor) -> torch.Tensor:
        """Pull the embedding similarity towards the batch-mean latent similarity (in-block pairs)."""
        zn = F.normalize(z.detach(), dim=-1)
        A = (zn @ zn.transpose(1, 2)).mean(0)
        Bm = e_hat @ e_hat.T
        gap = F.relu((A - Bm).abs() - self.options.align_margin)
        mask = self.same_block & ~torch.eye(self.n_tokens, dtype=torch.bool, device=z.device)
        return gap[mask].mean()

    def describe(self) -> dict:
        return {**super().describe(),
                "merge_table": f"frozen after tokenizer training from the {self.tokenizer_weights} "
                               f"(no noise); blocks={self.options.blocks}"}

    def freeze(self) -> None:
        _, sim = self.similarity(None)
        self.table.copy_(torch.from_numpy(all_cuts(average_linkage(sim.numpy()), self.n_tokens)))

    @property
    def frozen(self) -> bool:
        return bool((self.table[0] >= 0).all())

    def check_table(self) -> None:
        """A loaded table must be a valid nested set of partitions of this tokenizer's N."""
        n = self.n_tokens
        if self.table.shape != (n, n) or not self.frozen:
            raise ValueError(f"merge table of shape {tuple(self.table.shape)} does not match tokenizer N={n}")
        counts = torch.tensor([len(torch.unique(r)) for r in self.table])
        if not torch.equal(counts, torch.arange(1, n + 1)):
            raise ValueError(f"merge table rows do not hold 1..{n} clusters; the checkpoint is corrupt")

    # --- generator side ---------------------------------------------------------------------------
    def view(self, k, z=None) -> LengthView:
        k = check_length(k, self.n_tokens, self.name)
        labels = self.table[k - 1] if self.frozen else self.cluster(k).to(self.table.device)
        return view_from_labels(labels, k)

    def expand(self, zk, view):
        return view.unmerge(zk)
