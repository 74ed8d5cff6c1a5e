"""The faster search computes the same numbers: all guided scales of a search in one trajectory, the unguided
steps before the CFG interval shared by every scale (and by a cell's unguided and guided passes)."""

import json

import pytest
import torch
from helpers import TINY

import vltbench
from vltbench.evaluation import guidance, sweep
from vltbench.evaluation.generate import generate, generate_scales
from vltbench.models.flow import cfg_start


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from vltbench.data import load_data
    from vltbench.training.checkpoints import obtain_bundle

    cfg = vltbench.load_config(config=TINY)
    b, *_ = obtain_bundle(cfg, "merge", load_data(cfg.data), torch.device("cpu"), train=True)
    return b


def test_batched_scales_and_shared_prefix_give_the_same_images(bundle):
    s = bundle.cfg.sampler
    assert 0 < cfg_start(s.steps, s.shift, s.cfg_interval) < s.steps - 1  # something is shared
    ids = torch.arange(5, 17)
    scales = [1.5, 2.0, 3.7]
    alone = [generate(bundle, 4, ids, 3, s, w) for w in scales]
    prefixes = {}
    unguided = generate(bundle, 4, ids, 3, s, 1.0, None, prefixes)
    assert torch.equal(unguided, generate(bundle, 4, ids, 3, s, 1.0))  # resuming changes nothing
    together = generate_scales(bundle, 4, ids, 3, s, scales, None, prefixes)
    for a, b in zip(alone, together):
        assert torch.equal(a, b)
    assert torch.equal(generate(bundle, 4, ids, 3, s, 2.0, None, prefixes), alone[1])
    with pytest.raises(ValueError, match="guided scales only"):
        generate_scales(bundle, 4, ids, 3, s, [1.0, 2.0])


def test_the_batched_search_records_the_same_numbers_as_one_pass_per_scale(bundle, tmp_path, monkeypatch):
    overrides = ["sampler.cfg_scales=[1.0,1.5,2.0,3.0]"]
    fast = vltbench.evaluate("merge", [4], config=TINY, overrides=overrides, results=tmp_path / "fast", quiet=True)
    one_by_one = guidance.bracket_search
    monkeypatch.setattr(guidance, "bracket_search", lambda f, grid, extra, score_all=None, walk=False: one_by_one(f, grid, extra))
    monkeypatch.setattr(sweep, "PREFIX_BYTES", -1)  # and the guided pass from the noise, as before
    slow = vltbench.evaluate("merge", [4], config=TINY, overrides=overrides, results=tmp_path / "slow",
                             quiet=True)
    for a, b in zip(fast.path, slow.path):
        ra, rb = (json.loads(open(p).read()) for p in (a, b))
        assert ra["cell_id"] == rb["cell_id"]
        assert ra["guidance"] == rb["guidance"]  # every scale's score, to the last bit
        assert ra["metrics"] == rb["metrics"]


def test_the_full_length_cell_reads_its_unguided_samples_from_the_checkpoint_set(tmp_path, monkeypatch):
    """At K = N the unguided pass is the checkpoint's full-length set (cached for xlen_distance): read when an
    earlier cell made it, made by the K = N cell when it runs first, never sampled twice; every number equals
    sampling the pass in the cell."""
    n = vltbench.load_config(config=TINY).tokenizer.n_tokens
    runs = {}
    for name, share, lengths, seed in (("sampled", False, [4, n], 23), ("shared", True, [4, n], 23),
                                       ("sampled alone", False, [n], 29), ("alone", True, [n], 29)):
        monkeypatch.setattr(sweep, "SHARE_FULL_LENGTH", share)
        out = vltbench.evaluate("merge", lengths, config=TINY, seeds=[seed], results=tmp_path / name, quiet=True,
                                  overrides=["sampler.guidance=fixed", "sampler.cfg_scale=2.0"])
        runs[name] = {r["identity"]["length"]: r for r in (json.loads(open(p).read()) for p in out.path)}
    for shared, sampled in (("shared", "sampled"), ("alone", "sampled alone")):
        a, b = runs[shared][n], runs[sampled][n]
        assert a["cell_id"] == b["cell_id"] and a["guidance"]["scale"] != 1.0  # the reused path ran
        assert a["metrics"] == b["metrics"]
    assert runs["shared"][4]["metrics"] == runs["sampled"][4]["metrics"]
