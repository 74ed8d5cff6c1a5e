"""The plugin invariants (vltbench.testing) over everything registered: built-ins and entry points alike,
collected from the registries, never from a hand-kept list."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vltbench.core import registry
from vltbench.evaluation.metrics.specs import metric_specs
from vltbench.testing import check_extractor, check_method, check_metric

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("name", registry.methods.names())
def test_method_conforms(name):
    check_method(name)


# an extractor whose weights are a file (the standard Inception's 100 MB) loads for ~20 s: a slow test
EXTRACTORS = [pytest.param(n, marks=pytest.mark.slow) if registry.extractors.info(n)["weights"] == "file" else n
              for n in registry.extractors.names()]


@pytest.mark.parametrize("name", EXTRACTORS)
def test_extractor_conforms(name):
    check_extractor(name)


@pytest.mark.parametrize("key", [s.key for s in metric_specs()])
def test_metric_conforms(key):
    check_metric(key)


def test_the_checks_fail_a_broken_plugin():
    """Each check can fail: a method that drops the range check and returns a wrong-sized decoder input,
    an extractor that accepts float images, a metric whose compute does not resolve."""
    from vltbench.evaluation.extractors.base import Extractor
    from vltbench.evaluation.metrics.specs import MetricSpec
    from vltbench.methods.tail_drop import TailDropMethod
    from vltbench.models.lengths import LengthView

    class Broken(TailDropMethod):
        def view(self, k, z=None):
            return LengthView(self.n_tokens, k)  # no check_length: K = 0 and K = N + 1 pass

        def expand(self, zk, view):
            return torch.cat([zk, zk], 1)  # 2K decoder tokens: more than N at K > N / 2

    with pytest.raises(AssertionError) as e:
        check_method(Broken)
    assert "K = 0 (outside 1..N = 16) was not refused" in str(e.value) and "expand at K = 9 gave (3, 18, 8)" in str(e.value)

    class Lenient(Extractor):
        name, id, dim = "lenient", "lenient:v1", 3

        def __init__(self, *, device="cpu"):
            pass

        def __call__(self, images):
            return {"features": images.double().mean((2, 3)).numpy()}

    registry.extractors.register("lenient", Lenient)
    try:
        with pytest.raises(AssertionError, match="float images were not refused"):
            check_extractor("lenient")
    finally:
        registry.extractors.reset()
    with pytest.raises(AssertionError, match="compute"):
        check_metric(MetricSpec("spread", "spread", "higher", computed_by="guided", compute="nowhere_at_all:f"))


def test_an_installed_plugin_is_checked_without_editing_a_list(tmp_path):
    """The example method installed as a distribution (its entry point on PYTHONPATH): this file's
    parametrized test runs on it, because the parameters come from the registry."""
    from test_plugin import _install_fake_dist

    site = tmp_path / "site"
    _install_fake_dist(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                        str(ROOT / "tests" / "test_conformance.py"), "-k", "test_method_conforms", "-rA"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "PASSED" in r.stdout and "test_method_conforms[contiguous-merge]" in r.stdout, r.stdout[-3000:]
