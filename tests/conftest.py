import os

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache (latents, refstats, checkpoints) unless one is set."""
    if "VLTBENCH_TEST_CACHE" in os.environ:
        monkeypatch.setenv("VLTBENCH_CACHE", os.environ["VLTBENCH_TEST_CACHE"])
    else:
        monkeypatch.setenv("VLTBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
