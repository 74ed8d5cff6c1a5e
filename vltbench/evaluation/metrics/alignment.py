"""Cross-length alignment diagnostics at one length K, from full-length latents of real images.

Input: z (B, N, d), the tokenizer's full-length latents of B val images (the caller encodes them
with bundle.tokenizer.encode). The per-image representation at length K is what the decoder
receives at K: method.reconstruct_tokens(z, K) (merge / tome: cluster means copied back to all N
positions; nested-dropout: the first K tokens, then the mask token; tail-drop: the first K tokens
only, zero-padded here to N), flattened to N*d. The representation at full length is z itself
(what every built-in method's decoder receives at K = N).

- frechet_to_full: Fréchet distance between Gaussian fits (mean, unbiased covariance) of the two
  sets of flattened representations. When B <= N*d (the usual case: the covariances are rank
  deficient) it is computed exactly in sample space: with A, C the centred data scaled by
  1/sqrt(B-1), Tr sqrt(S1 S2) = nuclear norm of A C^T (B x B), which needs no sqrtm of an
  N*d x N*d matrix; otherwise vltbench.evaluation.metrics.fid.frechet_distance (its stable eigh route). Lower is better.
- cknna: CKNNA of Huh et al. 2024 ("The Platonic Representation Hypothesis", metrics.py of
  minyoungg/platonic-rep: `cknna(topk=10, unbiased=True)`): cosine kernels K_A, K_B of the
  L2-normalised representations; the mask keeps pairs (i, j), i != j, where j is among the 10
  nearest neighbours of i in BOTH representations; score = HSIC_u(mask K_A, mask K_B) /
  sqrt(HSIC_u(mask_A K_A, mask_A K_A) HSIC_u(mask_B K_B, mask_B K_B)), HSIC_u the unbiased HSIC
  (Song et al. 2012). Exactly 1 at K = N (the reference code's +1e-6 in the denominator is left
  out). It is NOT bounded to [0, 1]: the numerator uses the mutual-neighbour mask and the
  normalisers each representation's own mask, and unbiased HSIC estimates are noisy, so with few
  images it can exceed 1 (e.g. ~1.04 with 24 images) or fall below 0; it is reported unclipped,
  as the reference computes it, and None when a normaliser is <= 0. This is the quantity the LGM
  paper quotes (0.76 merge vs 0.34 nested dropout); use mutual_knn for a bounded score.
- mutual_knn: the plain mutual k-NN alignment of the same paper (mean over images of
  |kNN_K(i) ∩ kNN_N(i)| / k, k = 10, cosine), in [0, 1].
- merged_pair_cos: mean cosine similarity of latent token pairs (i != j) merged into the same
  token at K (same cluster of view.assignment), per image then averaged over images; None for
  prefix (truncation) views, where nothing is merged, and when no two tokens share a cluster
  (K = N). all_pair_cos: the mean over all pairs i != j, the reference the paper quotes
  (0.142 all pairs vs 0.858 merged at K = 128); it does not depend on K or the method.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vltbench.core.errors import UserError

KNN = 10


def representations(method, z: torch.Tensor, k: int) -> torch.Tensor:
    """(B, N*d) float64: the decoder input at length K, zero-padded to N tokens, flattened."""
    with torch.no_grad():
        r = method.reconstruct_tokens(z, k).double()
    b, m, d = r.shape
    if m < z.shape[1]:
        r = torch.cat([r, r.new_zeros(b, z.shape[1] - m, d)], dim=1)
    return r.reshape(b, -1)


def frechet(x: torch.Tensor, y: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of the rows of x and y (B, D), unbiased covariances."""
    x, y = x.double().cpu(), y.double().cpu()
    b, dim = x.shape
    if b < 2 or y.shape[0] < 2:
        raise UserError(f"a Fréchet distance needs at least 2 images per set, got {b} and {y.shape[0]}")
    mu1, mu2 = x.mean(0), y.mean(0)
    if b == y.shape[0] and b <= dim:
        a = (x - mu1) / (b - 1) ** 0.5
        c = (y - mu2) / (b - 1) ** 0.5
        tr_covmean = torch.linalg.svdvals(a @ c.T).sum()
        d = mu1 - mu2
        return float(d @ d + (a * a).sum() + (c * c).sum() - 2 * tr_covmean)
    from .fid import frechet_distance  # the stable eigh route: these covariances are often ill-conditioned

    s1, s2 = np.cov(x.numpy(), rowvar=False), np.cov(y.numpy(), rowvar=False)
    return float(frechet_distance(mu1.numpy(), np.atleast_2d(s1), mu2.numpy(), np.atleast_2d(s2)))


def _knn_mask(kernel: torch.Tensor, topk: int) -> torch.Tensor:
    n = kernel.shape[0]
    idx = kernel.clone().fill_diagonal_(float("-inf")).topk(topk, dim=1).indices
    return torch.zeros(n, n, dtype=kernel.dtype).scatter_(1, idx, 1.0)


def _hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    m = K.shape[0]
    Kt, Lt = K.clone().fill_diagonal_(0), L.clone().fill_diagonal_(0)
    v = (Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2)) - 2 * (Kt @ Lt).sum() / (m - 2)
    return v / (m * (m - 3))


def _check_knn(n: int, topk: int) -> None:
    if n <= max(topk, 3):
        raise UserError(f"k-NN alignment with k={topk} needs more than {max(topk, 3)} images, got {n}; "
                        "use more val images")


def cknna(x: torch.Tensor, y: torch.Tensor, topk: int = KNN) -> float | None:
    """CKNNA (Huh et al. 2024, unbiased HSIC, cosine kernel, mutual top-k mask); see module doc."""
    n = x.shape[0]
    _check_knn(n, topk)
    K = (lambda f: f @ f.T)(F.normalize(x.double().cpu(), dim=-1))
    L = (lambda f: f @ f.T)(F.normalize(y.double().cpu(), dim=-1))
    mk, ml = _knn_mask(K, topk), _knn_mask(L, topk)
    both = mk * ml
    kl = _hsic_unbiased(both * K, both * L)
    kk = _hsic_unbiased(mk * K, mk * K)
    ll = _hsic_unbiased(ml * L, ml * L)
    if not (bool(kk > 0) and bool(ll > 0)):
        return None
    return float(kl / torch.sqrt(kk * ll))


def mutual_knn(x: torch.Tensor, y: torch.Tensor, topk: int = KNN) -> float:
    """Mean fraction of shared cosine k-nearest neighbours, in [0, 1]."""
    _check_knn(x.shape[0], topk)
    K = (lambda f: f @ f.T)(F.normalize(x.double().cpu(), dim=-1))
    L = (lambda f: f @ f.T)(F.normalize(y.double().cpu(), dim=-1))
    return float(((_knn_mask(K, topk) * _knn_mask(L, topk)).sum(1) / topk).mean())


def pair_cosines(z: torch.Tensor, view) -> tuple[float | None, float]:
    """(merged_pair_cos, all_pair_cos) of latent tokens; see module doc."""
    zn = F.normalize(z.detach().double().cpu(), dim=-1)
    cos = zn @ zn.transpose(1, 2)  # (B, N, N)
    b, n, _ = cos.shape
    off = ~torch.eye(n, dtype=torch.bool)
    all_pairs = float((cos * off).sum((1, 2)).div(n * (n - 1)).mean()) if n > 1 else float("nan")
    if view.is_prefix:
        return None, all_pairs
    gamma = view.assignment.double().cpu()
    same = (gamma @ gamma.transpose(-1, -2)) * off  # (N, N) or (B, N, N)
    same = same.expand(b, n, n)
    pairs = same.sum((1, 2))
    if not bool((pairs > 0).all()):
        return None, all_pairs
    return float(((cos * same).sum((1, 2)) / pairs).mean()), all_pairs


def alignment_metrics(bundle, z: torch.Tensor, k: int, topk: int = KNN) -> dict:
    """Alignment of the length-K representation with the full-length one, over B val images.

    z: (B, N, d) full-length latents (bundle.tokenizer.encode of val images; B > topk).
    Returns {"frechet_to_full", "cknna", "mutual_knn", "merged_pair_cos", "all_pair_cos"}: floats;
    merged_pair_cos is None where nothing is merged (truncation views, K = N), cknna None when its
    normaliser is degenerate. See the module doc."""
    method = bundle.method
    if z.dim() != 3 or z.shape[1] != bundle.n_tokens:
        raise UserError(f"alignment needs full-length latents (B, {bundle.n_tokens}, d), got {tuple(z.shape)}")
    z = z.detach()
    full = z.double().reshape(z.shape[0], -1).cpu()
    rep = representations(method, z, k).cpu()
    with torch.no_grad():
        view = method.view(k, z) if method.data_dependent else method.view(k)
    merged, all_pairs = pair_cosines(z, view)
    return {
        "frechet_to_full": frechet(rep, full),
        "cknna": cknna(rep, full, topk),
        "mutual_knn": mutual_knn(rep, full, topk),
        "merged_pair_cos": merged,
        "all_pair_cos": all_pairs,
    }
