"""The built-in feature extractors, registered in vltbench.core.registry.extractors (one line each).

An extractor is an `Extractor` subclass (vltbench.evaluation.extractors.base) registered with
- domain: the datasets it is valid for, as a `Domain` (vltbench.evaluation.extractors.domains; None: any),
- weights: how it gets its weights, which decides the arguments it is built with (get_extractor):
    "none"     no weights file (built with device=); --inception-weights / expected_sha are refused
    "shipped"  weights shipped in the package, sha-checked by the extractor itself (built with weights=
               None for the shipped file, or a file, and device=); expected_sha is refused
    "file"     a local weights file, found and sha-verified (built with weights=, backend=, device=,
               expected_sha=)
- summary: what its numbers are, in a few words (the `--extractor` help lists every extractor with it).
A third-party extractor registers the same way, at run time (`vltbench.core.registry.extractors.register`)
or through the `vltbench.extractors` entry-point group, its class then carrying `domain` and `weights`
attributes (docs/extending.md).
"""

from __future__ import annotations

from .domains import Domain

WEIGHTS_POLICIES = ("none", "shipped", "file")


def register_builtins(r) -> None:
    r.register("inception", "vltbench.evaluation.extractors.inception:InceptionExtractor", source="built in",
               domain=Domain(what="ImageNet Inception-v3"), weights="file", summary="FID")
    r.register("randproj", "vltbench.evaluation.extractors.randproj:RandProjExtractor", source="built in",
               domain=Domain(what="random projection"), weights="none",
               summary="cheap, FD_randproj, not FID")
    # image_size: classifier.IMAGE_SIZE, the shipped weights' input size (a test keeps them in step)
    r.register("mnist-cnn", "vltbench.evaluation.extractors.mnist_cnn:ClassifierExtractor", source="built in",
               domain=Domain(("mnist",), 16, "mnist", what="digit classifier trained on mnist at 16x16"),
               weights="shipped", summary="FD_mnist-cnn and class accuracy; mnist only")
