import json

import pytest

from vltbench.reporting.check import check
from vltbench.core.errors import UserError
from vltbench.evaluation.store import ResultStore, build_record, load_frame
from helpers import identity, with_protocol, run_cli_here

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
    assert row.delta == pytest.approx(8.0) and row.how == "paired, 3 seed pairs"
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
    assert verdicts(rep) == {8: "ok"} and not rep.failed and any("K=32" in n for n in rep.not_checked)
    assert check(baseline, results(tmp_path / "x", gfid=partial), require_all=True).failed


# -- issue 24 / 23: check as a CI step -----------------------------------------------------------------

def seeded(root, values, method="merge", ckpt="a", class_acc=None):
    """Records keyed by (K, training seed, sampling seed): value = gfid; class_acc per record if given."""
    store = ResultStore(root)
    for (k, ts, s), v in values.items():
        metrics = {"gfid": v, "gfid_bootstrap_std": 0.8, "rfid": 10.0, "rfid_bootstrap_std": 0.3}
        if class_acc is not None:
            metrics.update(class_acc=class_acc[(k, ts, s)], class_acc_std=0.005)
        store.write(build_record(identity(method, k, s, 1000, f"{ckpt}{ts}"), metrics, provenance=PROV,
                                 config={"seed": ts}))
    return root


TWO_TRAIN = {(8, 0, 0): 40.0, (8, 1, 0): 42.0, (32, 0, 0): 20.0, (32, 1, 0): 21.0}


def test_class_acc_is_checked_with_its_declared_min_effect(tmp_path):
    """Issue 23, item 2: class_acc lowered by 0.1 on both seeds fails, from the API and the CLI."""
    acc = {key: 0.9 for key in TWO_TRAIN}
    base = seeded(tmp_path / "b", TWO_TRAIN, class_acc=acc)
    cand = seeded(tmp_path / "c", TWO_TRAIN, ckpt="c", class_acc={k: v - 0.1 for k, v in acc.items()})
    from vltbench import api
    rep = api.check(base, cand)
    assert rep.failed and verdicts(rep, "class_acc") == {8: "regression", 32: "regression"}
    assert rep.min_effect["class_acc"] == 0.02 and rep.min_effect["gfid"] == 1.0  # declared, not 1.0 for all
    r = run_cli_here("check", "--baseline", base, "--candidate", cand)
    assert r.returncode == 1 and "class_acc" in r.stdout, r.stdout + r.stderr
    # a caller's override still wins
    assert not api.check(base, cand, min_effect={"class_acc": 0.2}).failed


def test_pairs_on_training_and_sampling_seed(tmp_path):
    """Issue 24: one candidate training seed against a two-training-seed baseline compares that seed
    only (not the two-seed mean), and two training seeds at one sampling seed are two pairs."""
    base = seeded(tmp_path / "b", TWO_TRAIN)
    one = seeded(tmp_path / "one", {(8, 0, 0): 40.0, (32, 0, 0): 20.0}, ckpt="c")
    rep = check(load_frame(base), load_frame(one))
    assert {r.delta for r in rep.rows if r.metric == "gfid"} == {0.0} and not rep.failed
    assert any("training seed 1" in n for n in rep.not_checked), rep.not_checked
    both = seeded(tmp_path / "both", {k: v + 0.5 for k, v in TWO_TRAIN.items()}, ckpt="c")
    rep = check(load_frame(base), load_frame(both))
    row = next(r for r in rep.rows if r.metric == "gfid" and r.length == 8)
    assert row.how == "paired, 2 seed pairs" and row.delta == pytest.approx(0.5)
    assert not any("several records" in n for n in rep.notes)


def test_partial_candidate_passes_and_lists_the_rest_as_not_checked(tmp_path):
    base = seeded(tmp_path / "b", TWO_TRAIN)
    part = seeded(tmp_path / "c", {(8, 0, 0): 40.0, (8, 1, 0): 42.0}, ckpt="c")
    rep = check(load_frame(base), load_frame(part))
    assert not rep.failed and "passed" in str(rep)
    assert any("K=32" in n for n in rep.not_checked) and "not checked" in str(rep)
    assert check(load_frame(base), load_frame(part), require_all=True).failed
    r = run_cli_here("check", "--baseline", base, "--candidate", part)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_cli_here("check", "--baseline", base, "--candidate", part, "--require-all")
    assert r.returncode == 1, r.stdout + r.stderr


def test_cli_method_map_lengths_metrics(tmp_path):
    base = seeded(tmp_path / "b", TWO_TRAIN)
    mine = seeded(tmp_path / "c", {k: v + 5 for k, v in TWO_TRAIN.items()}, method="my-merge", ckpt="c")
    r = run_cli_here("check", "--baseline", base, "--candidate", mine)
    assert r.returncode == 2 and "--method-map my-merge=merge" in r.stderr, r.stderr
    r = run_cli_here("check", "--baseline", base, "--candidate", mine, "--method-map", "my-merge=merge")
    assert r.returncode == 1 and "regression" in r.stdout, r.stdout + r.stderr
    r = run_cli_here("check", "--baseline", base, "--candidate", mine, "--method-map", "my-merge=merge",
                     "--metrics", "rfid", "--lengths", "8", "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert {(x["metric"], x["length"]) for x in rows} == {("rfid", 8)}
    r = run_cli_here("check", "--baseline", base, "--candidate", mine, "--method-map", "my-merge")
    assert r.returncode == 2 and "--method-map" in r.stderr


def test_corrupt_baseline_record_fails_loudly(tmp_path):
    """Issue 23, item 5: a corrupt baseline record is a refusal naming the file, never a warning."""
    base = seeded(tmp_path / "b", TWO_TRAIN)
    bad = sorted(base.glob("merge/*.json"))[0]
    bad.write_text(bad.read_text()[:50])
    cand = seeded(tmp_path / "c", TWO_TRAIN, ckpt="c")
    from vltbench import api
    with pytest.raises(UserError, match=f"baseline record {bad}"):
        api.check(base, cand)
    r = run_cli_here("check", "--baseline", base, "--candidate", cand)
    assert r.returncode == 2 and str(bad) in r.stderr.strip().splitlines()[-1], r.stderr
