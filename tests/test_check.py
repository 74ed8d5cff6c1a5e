import json

import pytest

from vltbench.check import check
from vltbench.errors import UserError
from vltbench.store import ResultStore, build_record, load_frame
from helpers import identity, with_protocol

PROV = {"vltbench_version": "0.1.0", "created": "2025-01-01T00:00:00+00:00"}
BASE = {(8, 0): 40.0, (8, 1): 41.0, (8, 2): 39.5, (32, 0): 20.0, (32, 1): 20.6, (32, 2): 19.8}


def results(root, gfid=BASE, method="merge", n_samples=1000, ckpt="a", shift=0.0, rfid=10.0, guidance=None):
    store = ResultStore(root)
    for (k, s), v in gfid.items():
        rec = build_record(identity(method, k, s, n_samples, ckpt, guidance=guidance),
                           {"gfid": v + shift, "gfid_bootstrap_std": 0.8, "rfid": rfid + 0.1 * s,
                            "rfid_bootstrap_std": 0.3}, provenance=PROV)
        store.write(with_protocol(rec, 2.5 if guidance == "search" else 1.5) if guidance else rec)
    return load_frame(root)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return results(tmp_path_factory.mktemp("base"))


def verdicts(rep, metric="gfid"):
    return {r.length: r.verdict for r in rep.rows if r.metric == metric}


def test_true_regression_fails(baseline, tmp_path):
    rep = check(baseline, results(tmp_path, ckpt="b", shift=8.0))
    assert rep.failed and verdicts(rep) == {8: "regression", 32: "regression"}
    assert verdicts(rep, "rfid") == {8: "ok", 32: "ok"}
    row = next(r for r in rep.rows if r.metric == "gfid" and r.length == 8)
    assert row.delta == pytest.approx(8.0) and row.how == "paired, 3 seeds"
    out = json.loads(rep.to_json())
    assert out["failed"] and {r["verdict"] for r in out["rows"]} == {"regression", "ok"}
    assert "regression" in str(rep) and "FAILED" in str(rep)


def test_identical_rerun_passes(baseline, tmp_path):
    rep = check(baseline, results(tmp_path))
    assert not rep.failed and set(verdicts(rep).values()) == {"ok"}
    assert all(r.delta == 0 and r.threshold == 1.0 for r in rep.rows)  # the min effect floor


def test_change_within_noise_passes(baseline, tmp_path):
    noisy = {key: v + d for (key, v), d in zip(BASE.items(), [1.5, -1.0, 0.9, -0.4, 1.2, 0.6])}
    rep = check(baseline, results(tmp_path, gfid=noisy, ckpt="b"))
    assert not rep.failed, str(rep)  # +0.47 mean shift at K=8 with a noisy 1.3 spread: not a regression
    # the same shift is flagged once the caller lowers z and min effect: the noise model decides
    assert check(baseline, results(tmp_path / "x", gfid=noisy, ckpt="b"), z=0.1,
                 min_effect={"gfid": 0.1}).failed


def test_single_seed_uses_bootstrap_std(tmp_path):
    base = results(tmp_path / "b", gfid={(8, 0): 40.0})
    ok = check(base, results(tmp_path / "c1", gfid={(8, 0): 41.5}, ckpt="b"))
    row = next(r for r in ok.rows if r.metric == "gfid")
    assert row.how == "bootstrap std" and row.noise == pytest.approx(0.8 * 2 ** 0.5)
    assert row.verdict == "ok" and row.threshold == pytest.approx(2 * 0.8 * 2 ** 0.5)
    bad = check(base, results(tmp_path / "c2", gfid={(8, 0): 45.0}, ckpt="b"))
    assert bad.failed
    better = check(base, results(tmp_path / "c3", gfid={(8, 0): 30.0}, ckpt="b"))
    assert not better.failed and verdicts(better) == {8: "improved"}


def test_mismatched_spec_is_refused(baseline, tmp_path):
    with pytest.raises(UserError, match=r"K=8: metric_spec.n_samples \(baseline 1000, candidate 500\) differs"):
        check(baseline, results(tmp_path, n_samples=500))


def test_different_guidance_protocols_are_refused(tmp_path):
    fixed = results(tmp_path / "fixed", guidance="fixed")
    search = results(tmp_path / "search", guidance="search")
    msg = (r"guidance protocols differ for merge K=8: baseline used guidance protocol 'fixed' \(w=1.5\), "
           r"candidate 'search' \(grid \[1.0, 1.5, 2.5, 4.0\].*compare results measured with the same protocol")
    with pytest.raises(UserError, match=msg):
        check(fixed, search)
    with pytest.raises(UserError, match=r"baseline used guidance protocol 'search'.*candidate 'fixed' \(w=1.5\)"):
        check(search, fixed)
    with pytest.raises(UserError, match=r"baseline used guidance protocol 'fixed' \(w=1.5\), candidate 'search'"):
        check(results(tmp_path / "old"), search)  # records from before the protocol: sampler.cfg_scale = fixed
    assert not check(search, results(tmp_path / "search2", guidance="search", ckpt="b")).failed  # same protocol


def test_nothing_in_common_is_refused(baseline, tmp_path):
    other = results(tmp_path, method="tome")
    with pytest.raises(UserError, match="nothing to compare"):
        check(baseline, other)
    # ...unless the new method is explicitly held to an existing one's numbers
    assert not check(baseline, other, method_map={"tome": "merge"}).failed


def test_missing_candidate_cells_are_reported(baseline, tmp_path):
    partial = {key: v for key, v in BASE.items() if key[0] == 8}
    rep = check(baseline, results(tmp_path, gfid=partial))
    assert verdicts(rep) == {8: "ok", 32: "missing"} and rep.failed
    assert not check(baseline, results(tmp_path / "x", gfid=partial), fail_on_missing=False).failed
