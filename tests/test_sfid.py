"""sFID: the ADM evaluator's formula (evaluations/evaluator.py of openai/guided-diffusion: mixed_6/conv[..., :7]
flattened NHWC, np.mean / np.cov(rowvar=False), Frechet distance with scipy sqrtm) on synthetic features, and
the tap on the real Inception network through `vltbench score`."""

import warnings

import numpy as np
import pytest
import torch
from helpers import TINY
from PIL import Image
from scipy import linalg

import vltbench
from vltbench.evaluation.metrics import sfid


def adm_fd(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """The evaluator's FIDStatistics.frechet_distance, restated."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy's disp=, as the evaluator calls it
        covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def adm_spatial(nchw: np.ndarray) -> np.ndarray:
    """What the evaluator does to its NHWC mixed_6/conv activations: [..., :7], reshape([N, -1])."""
    nhwc = nchw.transpose(0, 2, 3, 1)
    spatial = nhwc[..., :7]
    return spatial.reshape([spatial.shape[0], -1])


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_sfid_equals_the_adm_evaluators_formula_on_synthetic_features(shift):
    rng = np.random.default_rng(0)
    # small 5 x 5 maps: 175-d rows, more rows than dimensions, so sqrtm is well conditioned and fast
    mix = rng.normal(size=(192, 192)) / 14
    a = np.einsum("bchw,cd->bdhw", rng.normal(size=(400, 192, 5, 5)), mix)
    b = np.einsum("bchw,cd->bdhw", rng.normal(size=(300, 192, 5, 5)) * 1.1 + shift, mix)
    rows_a, rows_b = adm_spatial(a), adm_spatial(b)
    expected = adm_fd(rows_a.mean(0), np.cov(rows_a, rowvar=False), rows_b.mean(0), np.cov(rows_b, rowvar=False))

    ours_a, ours_b = sfid.SpatialTap(), sfid.SpatialTap()
    for x, tap in ((a, ours_a), (b, ours_b)):
        for s in range(0, len(x), 64):  # streamed in batches, as extraction sees them
            tap.add(sfid.spatial_rows(torch.from_numpy(x[s:s + 64])))
    assert np.array_equal(ours_a.features(), rows_a.astype(np.float32))  # the evaluator's order, exactly
    got = sfid.sfid(ours_a, ours_b.stats.mean(), ours_b.stats.cov())
    assert got == pytest.approx(expected, rel=1e-6)
    assert expected > 0


def test_sfid_needs_inception():
    class Other:
        id = "randproj:d=64"

    assert "Inception" in sfid.unavailable_reason(Other())


@pytest.fixture(scope="module")
def inception():
    from vltbench.evaluation.extractors import get_extractor

    try:
        return get_extractor("inception")
    except vltbench.UserError as e:
        pytest.skip(f"no local Inception weights: {e}")


@pytest.mark.slow  # ~30 s: the Inception network on CPU
def test_score_reports_sfid_against_a_folder_and_an_adm_batch(inception, tmp_path):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (1, 16, 16, 3))
    real = np.clip(base + rng.integers(-40, 40, (12, 16, 16, 3)), 0, 255).astype(np.uint8)
    fake = np.clip(base + rng.integers(-60, 60, (10, 16, 16, 3)), 0, 255).astype(np.uint8)
    (tmp_path / "real").mkdir()
    for i, a in enumerate(real):
        Image.fromarray(a).save(tmp_path / "real" / f"{i}.png")
    np.savez(tmp_path / "fake.npz", arr_0=fake)
    common = dict(config=TINY, extractor="inception", overrides=["data.image_size=16"], results=tmp_path / "s",
                  quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few samples: the singular-covariance warnings are expected
        vs_folder = vltbench.score(tmp_path / "fake.npz", reference=tmp_path / "real", **common)
        # an ADM reference batch holding the same images' statistics (mu / sigma and mu_s / sigma_s)
        batch = torch.from_numpy(real).permute(0, 3, 1, 2).contiguous()
        with sfid.tapped(inception) as tap:
            pooled = inception(batch)["features"]
        np.savez(tmp_path / "ref.npz", mu=pooled.mean(0), sigma=np.cov(pooled, rowvar=False),
                 mu_s=tap.stats.mean(), sigma_s=tap.stats.cov())
        vs_adm = vltbench.score(tmp_path / "fake.npz", reference=tmp_path / "ref.npz", **common)
    assert tap.features().shape == (12, sfid.DIM)
    assert vs_folder["metrics"]["sfid"] > 0
    assert vs_adm["metrics"]["sfid"] == pytest.approx(vs_folder["metrics"]["sfid"], rel=1e-6)
    assert vs_adm["metrics"]["gfid"] == pytest.approx(vs_folder["metrics"]["gfid"], rel=1e-6)
