"""Length views: how N full-length latents map to the K tokens a generator models, and back.

One abstraction covers every built-in method (see ARCHITECTURE.md):
- P (N x K, or B x N x K when it depends on the image): z_K = P^T z; columns sum to 1;
- sizes (K,) or (B, K): how many full positions each token stands for;
- the method's expand rule (K tokens -> decoder input) lives on the method.
Truncation is P = first K columns of the identity (stored as P=None, "prefix") with sizes 1, so the
DiT reduces to the plain prefix DiT; merge uses the column-normalised cluster assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.cluster.hierarchy import linkage

from vltbench.core.errors import UserError


def check_length(k: int, n_tokens: int, method: str = "") -> int:
    if isinstance(k, bool) or int(k) != k or not 1 <= int(k) <= n_tokens:
        who = f" for method {method}" if method else ""
        raise UserError(f"length K={k} is outside 1..{n_tokens}{who}; choose lengths between 1 and {n_tokens}")
    return int(k)


@dataclass
class LengthView:
    n_tokens: int
    k: int
    P: torch.Tensor | None = None  # (N, K) or (B, N, K); None = prefix of length K
    sizes: torch.Tensor | None = None  # (K,) or (B, K); None = all ones

    @property
    def is_prefix(self) -> bool:
        return self.P is None

    @property
    def assignment(self) -> torch.Tensor | None:
        """One-hot cluster assignment Gamma (N, K) or (B, N, K)."""
        return None if self.P is None else (self.P > 0).to(self.P.dtype)

    def merge(self, z: torch.Tensor) -> torch.Tensor:
        """(B or 1, N, C) -> (B, K, C): z_K = P^T z (a plain slice for a prefix)."""
        if self.P is None:
            return z[:, : self.k]
        P = self.P.to(z.dtype)
        return torch.einsum("...nk,...nc->...kc", P, z)

    def unmerge(self, zk: torch.Tensor) -> torch.Tensor:
        """(B, K, C) -> (B, N, C): copy each token to all positions it stands for."""
        if self.P is None:
            raise ValueError("a prefix view has no unmerge; the method fills the tail")
        return torch.einsum("...nk,...kc->...nc", self.assignment.to(zk.dtype), zk)

    def size_tensor(self, like: torch.Tensor) -> torch.Tensor:
        if self.sizes is None:
            return torch.ones(self.k, device=like.device, dtype=like.dtype)
        return self.sizes.to(device=like.device, dtype=like.dtype)

    def attention_bias(self) -> torch.Tensor | None:
        """Proportional attention: log(m_j) added to every query's logit for key j.

        None when all sizes are 1, so K = N (and truncation) is exactly the plain DiT."""
        if self.sizes is None or bool((self.sizes == 1).all()):
            return None
        b = torch.log(self.sizes.float())
        return b[:, None, None, :] if b.dim() == 2 else b[None, None, None, :]

    def to(self, device) -> "LengthView":
        return LengthView(self.n_tokens, self.k,
                          None if self.P is None else self.P.to(device),
                          None if self.sizes is None else self.sizes.to(device))


def prefix_view(k: int, n_tokens: int) -> LengthView:
    return LengthView(n_tokens, check_length(k, n_tokens))


def view_from_labels(labels: torch.Tensor, k: int) -> LengthView:
    """Cluster labels (N,) or (B, N) with values 0..K-1 -> merge view (P column-normalised)."""
    gamma = torch.nn.functional.one_hot(labels.long(), k).float()
    sizes = gamma.sum(-2)
    return LengthView(labels.shape[-1], k, gamma / sizes.unsqueeze(-2), sizes)


# --- average-linkage clustering, shared by merge (global table) and tome (per image) ---------------

def average_linkage(sim: np.ndarray) -> np.ndarray:
    """Average-linkage dendrogram over cosine distance 1 - S (scipy's linkage matrix).

    Reads the upper triangle (i < j) of 1 - S, as the official LGM code's linkage does: an asymmetric
    S (merge's exploration noise is one independent draw per ordered pair) is not symmetrised, so each
    pair keeps one full-strength draw (symmetrising would average two and shrink the noise by sqrt 2)."""
    sim = np.asarray(sim, dtype=np.float64)
    dist = np.clip(1.0 - sim, 0.0, None)
    return linkage(dist[np.triu_indices(len(sim), 1)], method="average")


def _canonical(roots: np.ndarray) -> np.ndarray:
    """Number clusters in order of their smallest member, so K = N gives the identity."""
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse]


def _merge_steps(link: np.ndarray, n: int):
    """Yield cluster ids of all N positions after 0, 1, ..., N-1 dendrogram merges."""
    member_of = np.arange(n)  # current cluster id (scipy numbering) of each position
    yield member_of.copy()
    for step in range(n - 1):
        a, b = link[step, 0], link[step, 1]
        member_of[(member_of == a) | (member_of == b)] = n + step
        yield member_of.copy()


def cut_labels(link: np.ndarray, n: int, k: int) -> np.ndarray:
    """Exactly K clusters: apply the first N-K merges of the dendrogram.

    Cutting one dendrogram at different heights makes partitions nested across K."""
    for step, roots in enumerate(_merge_steps(link, n)):
        if step == n - k:
            return _canonical(roots)
    raise ValueError(f"K={k} outside 1..{n}")


def all_cuts(link: np.ndarray, n: int) -> np.ndarray:
    """Labels for every K = 1..N: row K-1 holds the (N,) labels at K clusters."""
    rows = [_canonical(r) for r in _merge_steps(link, n)]  # rows[s] has N - s clusters
    return np.stack(rows[::-1])
