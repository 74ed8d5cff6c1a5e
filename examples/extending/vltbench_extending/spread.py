import numpy as np

from vltbench.plugins import MetricSpec


def feature_spread(out):
    """The mean per-feature std of the guided samples' features (a diversity proxy: 0 = all alike)."""
    return float(np.asarray(out["features"]).std(axis=0).mean())


SPREAD = MetricSpec("feature_spread", "feat. spread", "higher", computed_by="guided",
                    compute="vltbench_extending.spread:feature_spread")
