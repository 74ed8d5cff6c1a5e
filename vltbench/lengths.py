"""The plugin API's helpers for lengths (`from vltbench.lengths import LengthView, check_length`).

A stable path for plugins and the built-in methods alike; the code lives in vltbench.models.lengths.
"""

from vltbench.models.lengths import (
    LengthView,
    all_cuts,
    average_linkage,
    check_length,
    cut_labels,
    prefix_view,
    view_from_labels,
)

__all__ = ["LengthView", "all_cuts", "average_linkage", "check_length", "cut_labels", "prefix_view", "view_from_labels"]
