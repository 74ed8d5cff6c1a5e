"""tome — data-dependent (per-image) merging, the paper's "no global merge" ablation. See README.md."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from vltbench.lengths import LengthView, average_linkage, check_length, cut_labels, view_from_labels
from vltbench.method import Method, NoOptions


class ToMeOptions(NoOptions):
    # How a generator gets a merge pattern it cannot know: borrow it from a training image.
    pattern_source: Literal["train-image"] = "train-image"


def per_image_labels(z: torch.Tensor, k: int) -> torch.Tensor:
    """Average-linkage clustering of each image's own tokens by cosine similarity -> (B, N) labels."""
    zn = F.normalize(z.detach().float(), dim=-1).cpu()
    sims = (zn @ zn.transpose(1, 2)).numpy()
    n = z.shape[1]
    return torch.from_numpy(np.stack([cut_labels(average_linkage(s), n, k) for s in sims])).to(z.device)


class ToMeMethod(Method):
    name = "tome"
    family = "data-dependent merge"
    description = "per-image merging of similar tokens (no global table); sampling borrows a training image's pattern"
    Options = ToMeOptions
    data_dependent = True

    def train_tokens(self, z, gen):
        k = self.sample_length(gen)
        if k == self.n_tokens:
            return z, {}
        view = self.view(k, z)
        return view.unmerge(view.merge(z)), {}

    def view(self, k, z=None) -> LengthView:
        k = check_length(k, self.n_tokens, self.name)
        if z is None:
            raise ValueError("tome's merge pattern depends on the image: pass its latents")
        return view_from_labels(per_image_labels(z, k), k)

    def expand(self, zk, view):
        return view.unmerge(zk)

    def generation_view(self, k, sample_ids, seed, bank):
        # Sample i borrows the pattern of training image hash(seed, i): the pattern is not the one
        # the generated image would have had, which is the cost of data dependence this row shows.
        if bank is None:
            raise ValueError("tome needs the training latents to borrow merge patterns at sampling time")
        rng = np.random.default_rng([seed, 7])
        picks = rng.integers(0, len(bank), size=int(sample_ids.max()) + 1)[sample_ids.cpu().numpy()]
        return self.view(k, bank[torch.from_numpy(picks)])

    def describe(self):
        return {**super().describe(), "pattern_source": "per-sample: merge pattern of training image (seed, sample index); "
                                  "the generated image's own pattern is unknowable before it exists"}
