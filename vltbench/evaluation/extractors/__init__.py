"""Feature extractors: the networks whose features FID / KID / precision-recall / IS compare.

One module per concept: `base` (the `Extractor` class every extractor subclasses), `builtins` (the
built-in registrations, one line each), `build` (building one by name, its metric label), `domains`
(which datasets each is valid for; what `auto` picks), and one module per built-in extractor
(`inception` with `inception_weights`, `randproj`, `mnist_cnn`). Names are exported lazily so that
importing the torch-free `domains` (the CLI's config checks) imports no network.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Extractor": "base", "check_images": "base", "INCEPTION_ID_PREFIX": "base",
    "get_extractor": "build", "extractor_for": "build", "metric_label": "build",
    "Domain": "domains", "resolve_extractor": "domains",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
