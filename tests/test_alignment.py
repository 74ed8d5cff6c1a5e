"""Cross-length alignment diagnostics: identities at K = N, None where nothing merges, finite values."""

import math

import numpy as np
import pytest
import torch
from helpers import SMALL

from vltbench.core import registry
from vltbench.core.config import load_config
from vltbench.core.errors import UserError
from vltbench.evaluation.metrics.alignment import alignment_metrics, cknna, frechet, mutual_knn
from vltbench.evaluation.metrics.fid import frechet_distance
from vltbench.models.bundle import build_bundle

METHODS = registry.methods.names()  # every registered method, built-in or installed
N_IMAGES = 24


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny", overrides=SMALL)


@pytest.fixture(scope="module")
def setups(cfg):
    images = torch.rand(N_IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = {}
    for m in METHODS:
        b = build_bundle(cfg, m, 10)
        b.method.freeze()
        with torch.no_grad():
            out[m] = (b, b.tokenizer.encode(images))
    return out


@pytest.mark.parametrize("method", METHODS)
def test_full_length_is_identity(setups, method):
    b, z = setups[method]
    r = alignment_metrics(b, z, b.n_tokens)
    assert abs(r["frechet_to_full"]) < 1e-9
    assert r["cknna"] == pytest.approx(1.0, abs=1e-12)
    assert r["mutual_knn"] == 1.0
    assert r["merged_pair_cos"] is None  # nothing merged at K = N


@pytest.mark.parametrize("method", METHODS)
def test_values_finite_at_every_length(setups, method):
    b, z = setups[method]
    for k in (1, 4, 12):
        r = alignment_metrics(b, z, k)
        assert set(r) == {"frechet_to_full", "cknna", "mutual_knn", "merged_pair_cos", "all_pair_cos"}
        assert math.isfinite(r["frechet_to_full"]) and r["frechet_to_full"] > 0
        assert math.isfinite(r["cknna"]) and 0 <= r["mutual_knn"] <= 1
        assert -1 <= r["all_pair_cos"] <= 1
        if registry.get(method).family == "truncation":  # nothing merges
            assert r["merged_pair_cos"] is None
        else:
            assert isinstance(r["merged_pair_cos"], float) and -1 <= r["merged_pair_cos"] <= 1


def test_merged_pair_cos_matches_direct_loop(setups):
    b, z = setups["merge"]
    k = 6
    labels = b.method.table[k - 1]
    zn = torch.nn.functional.normalize(z.double(), dim=-1)
    per_image = []
    for img in zn:
        vals = [float(img[i] @ img[j]) for i in range(b.n_tokens) for j in range(b.n_tokens)
                if i != j and labels[i] == labels[j]]
        per_image.append(np.mean(vals))
    r = alignment_metrics(b, z, k)
    assert r["merged_pair_cos"] == pytest.approx(np.mean(per_image), abs=1e-12)
    # tome clusters each image by cosine similarity: its merged pairs are more similar than average
    bt, zt = setups["tome"]
    rt = alignment_metrics(bt, zt, 8)
    assert rt["merged_pair_cos"] > rt["all_pair_cos"]


def test_frechet_sample_space_matches_fid():
    g = torch.Generator().manual_seed(1)
    for n, dim in ((40, 6), (6, 20)):  # full-rank and rank-deficient covariances
        x, y = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g) * 1.3 + 0.2
        ref = frechet_distance(x.mean(0).double().numpy(), np.cov(x.double().numpy(), rowvar=False),
                               y.mean(0).double().numpy(), np.cov(y.double().numpy(), rowvar=False))
        assert frechet(x, y) == pytest.approx(ref, rel=1e-5)


def test_knn_scores_and_too_few_images():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 8, generator=g)
    assert cknna(x, x) == pytest.approx(1.0, abs=1e-12) and mutual_knn(x, x) == 1.0
    assert mutual_knn(x, torch.randn(30, 8, generator=g)) < 0.8
    with pytest.raises(UserError, match="more than 10 images"):
        mutual_knn(x[:10], x[:10])


def test_bad_latents_shape(setups):
    b, z = setups["merge"]
    with pytest.raises(UserError, match="full-length latents"):
        alignment_metrics(b, z[:, :8], 4)
    with pytest.raises(UserError, match="outside 1..32"):
        alignment_metrics(b, z, 33)
