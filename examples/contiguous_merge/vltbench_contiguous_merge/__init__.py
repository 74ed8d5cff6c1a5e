"""A third-party vltbench method: merge K contiguous runs of positions (fixed, nothing learned).

This is the paper's "global merge without learned embeddings" ablation in its simplest form, and
the example of the README's "Writing a method" section."""

import torch

from vltbench.lengths import check_length, view_from_labels
from vltbench.method import Method


class ContiguousMerge(Method):
    name = "contiguous-merge"
    family = "global merge"
    description = "fixed grouping into K contiguous runs of positions (no learned table)"

    def view(self, k, z=None):
        # Data-independent: position i joins group floor(i K / N), the same for every image.
        k = check_length(k, self.n_tokens, self.name)
        return view_from_labels(torch.arange(self.n_tokens) * k // self.n_tokens, k)

    def expand(self, zk, view):
        return view.unmerge(zk)  # copy each token back to the positions it stands for

    def train_tokens(self, z, gen):
        view = self.view(self.sample_length(gen))  # K from the shared schedule
        return view.unmerge(view.merge(z)), {}  # the decoder sees each group's mean
