"""The three constants a contributor must bump (CONTRIBUTING.md), each guarded where the change is detectable:

- TRAINING_RECIPE (vltbench/models/bundle.py): what a config trains to. A tiny training of a method defined
  here (so no built-in's code, which has its own fingerprint, is involved) must give the losses recorded for
  the current recipe number: training, architecture or loss code that changes them needs a bump.
- EVAL_PROTOCOL (vltbench/evaluation/plan.py): what a measurement means. The stratified reference choice and
  FD / KID / precision-recall on fixed features must give the values recorded for the current protocol.
- IDENTITY_DEFAULTS (vltbench/models/bundle.py): a new option's old behaviour. A new config key changes the
  training identity; tests/test_method_author.py (the shipped checkpoints still match) and
  tests/test_plan.py (every committed record is still its cell, found done) fail until its default is listed.

After an intended change: bump the constant, then `VLTBENCH_WRITE_GOLDEN=1 pytest tests/test_constants.py`
rewrites tests/fixtures/constants_golden.json under the new number (commit both).
"""

import json
import os
from pathlib import Path

import numpy as np
from helpers import SMALL, TINY

from vltbench.core import registry
from vltbench.core.config import load_config
from vltbench.data import load_dataset
from vltbench.data.core import stratified
from vltbench.evaluation.metrics.fid import frechet_distance
from vltbench.evaluation.metrics.kid import kid
from vltbench.evaluation.metrics.precision_recall import precision_recall
from vltbench.evaluation.plan import EVAL_PROTOCOL
from vltbench.models.bundle import TRAINING_RECIPE
from vltbench.plugins import TruncationMethod
from vltbench.training.loops import loss_log_path, read_loss_log

GOLDEN = Path(__file__).parent / "fixtures" / "constants_golden.json"
WRITE = os.environ.get("VLTBENCH_WRITE_GOLDEN") == "1"
# Far above the run-to-run spread of a few float32 CPU steps on another machine (BLAS, threads: ~1e-6),
# far below what a changed loss weighting, schedule or architecture moves (percents).
RTOL = 1e-3


class PrefixOnly(TruncationMethod):
    """The plainest length mechanism (the decoder sees the first K tokens): this file's code, not a built-in's."""

    name, family, description = "recipe-probe", "truncation", "first K tokens (tests/test_constants.py)"

    def train_tokens(self, z, gen):
        return z[:, : self.sample_length(gen)], {}

    def expand(self, zk, view):
        return zk


def _golden() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}


def _compare(section: str, number: int, constant: str, where: str, values: dict) -> None:
    golden = _golden()
    if WRITE:
        golden[section] = {"number": number, **values}
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    recorded = golden[section]
    assert recorded["number"] == number, (
        f"{constant} is {number} but the recorded values are for {recorded['number']}: rewrite them with "
        "VLTBENCH_WRITE_GOLDEN=1 (see this file's docstring)")
    for key, value in values.items():
        assert np.allclose(value, recorded[key], rtol=RTOL, atol=1e-9), (
            f"{key} changed under the same {constant} = {number}: {value} vs recorded {recorded[key]}. "
            f"If the change is intended, bump {constant} ({where}) and rewrite the values (CONTRIBUTING.md)")


def test_training_recipe_is_bumped_when_training_changes(tmp_path, monkeypatch):
    from vltbench.training.checkpoints import train_bundle

    monkeypatch.setenv("VLTBENCH_CACHE", str(tmp_path / "cache"))  # trained from scratch, never resumed

    cfg = load_config("tiny", TINY, {**SMALL, "tokenizer.steps": 4, "tokenizer.warm_start": 0, "tokenizer.batch_size": 8,
                                     "tokenizer.warmup": 1, "dit.steps": 4, "dit.batch_size": 8, "dit.warmup": 1})
    registry.register("recipe-probe", PrefixOnly)
    try:
        ds = load_dataset("embedded", train_count=64, val_count=26)
        ckpt = tmp_path / "probe.safetensors"
        train_bundle(cfg, "recipe-probe", ds, "cpu", out=ckpt)
        losses = {stage: [r["loss"] for r in read_loss_log(loss_log_path(ckpt, stage))]
                  for stage in ("tokenizer", "dit-joint")}
    finally:
        registry.reset()
    assert all(len(v) == 4 for v in losses.values())
    _compare("training", TRAINING_RECIPE, "TRAINING_RECIPE", "vltbench/models/bundle.py",
             {f"{stage}_losses": v for stage, v in losses.items()})


def test_eval_protocol_is_bumped_when_measurement_changes():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 40)
    picked = stratified(labels, 50, seed=3)
    real, fake = rng.normal(size=(200, 8)), rng.normal(0.3, 1.1, size=(150, 8))
    fd = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    k = kid(real, fake, subset_size=50, subsets=20)
    pr = precision_recall(real, fake, k=3)
    _compare("measurement", EVAL_PROTOCOL, "EVAL_PROTOCOL", "vltbench/evaluation/plan.py",
             {"stratified_indices": sorted(int(i) for i in picked), "fd": float(fd), "kid": float(k["kid"]),
              "precision": float(pr["precision"]), "recall": float(pr["recall"])})
