"""The plugin API: what a method imports (`from vltbench.method import Method`).

A stable path for plugins and the built-in methods alike; the interface lives in vltbench.models.method.
"""

from vltbench.models.method import Method, NoOptions, TruncationMethod

__all__ = ["Method", "NoOptions", "TruncationMethod"]
