"""The one public door for plugins: everything a method, dataset, feature extractor or metric author may import.

    from vltbench.plugins import Method, array_splits, Extractor, MetricSpec, register_metric

The names here (and those of `vltbench`, `vltbench.method`, `vltbench.lengths` and `vltbench.testing`) are
the promised paths; every other module of vltbench is internal and may move (docs/plugins.md).

Methods: `Method`, `TruncationMethod`, `NoOptions` (options are a pydantic model: subclass `BaseModel` or
NoOptions) and the length helpers. Datasets: `array_splits` builds (train, val) from uint8 arrays,
`ImageSet` / `Dataset` are the types the harness reads. Extractors: `Extractor`, `check_images`, `Domain`
(the entry field saying which datasets / image size its weights admit). Metrics: `MetricSpec`,
`register_metric`. Registries: `methods`, `datasets`, `extractors`, `metrics` (one `Registry` shape:
`.register(name, target, **info)`, `.names()`, `.get(name)`), and `register_method` for methods.
"""

from vltbench.core.registry import Registry, datasets, extractors, methods, metrics
from vltbench.data.core import ArrayImageSet, Dataset, ImageSet, array_splits
from vltbench.evaluation.extractors.base import Extractor, check_images
from vltbench.evaluation.extractors.domains import Domain
from vltbench.evaluation.metrics.specs import MetricSpec, register_metric
from vltbench.lengths import *  # noqa: F403  (the length helpers: one list of them, vltbench.lengths.__all__)
from vltbench.lengths import __all__ as _length_names
from vltbench.models.method import Method, NoOptions, TruncationMethod

register_method = methods.register

__all__ = [
    # methods
    "Method", "TruncationMethod", "NoOptions",
    *_length_names,
    # datasets
    "array_splits", "ImageSet", "ArrayImageSet", "Dataset",
    # feature extractors
    "Extractor", "check_images", "Domain",
    # metrics
    "MetricSpec", "register_metric",
    # registries
    "Registry", "methods", "datasets", "extractors", "metrics", "register_method",
]
