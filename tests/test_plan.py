"""The planned sweep (vltbench.evaluation.plan): one plan of (method, K, seed) cells, their identities
and whether each is done, shared by the local run, the job-array executors and evaluate's frame."""

import warnings

import pytest
from helpers import TINY

from vltbench.core.config import load_config
from vltbench.core.errors import UserError
from vltbench.data import load_data
from vltbench.evaluation.extractors import extractor_for
from vltbench.evaluation.plan import SweepSpec, measurement_spec, plan
from vltbench.evaluation.references import RealSets
from vltbench.evaluation.store import ResultStore, build_record


@pytest.fixture(scope="module")
def setting():
    cfg = load_config("tiny", TINY)
    ds = load_data(cfg.data)
    extractor = extractor_for(cfg)
    return cfg, ds, measurement_spec(cfg, extractor, RealSets(cfg, ds, extractor))


def _plan(setting, results, methods=("merge", "tail-drop"), lengths=(4, 32), seeds=(0, 1)):
    cfg, ds, mspec = setting
    spec = SweepSpec(cfg, list(methods), list(lengths), list(seeds), results)
    return plan(spec, {m: m[0] * 64 for m in methods}, ds, mspec)


def test_plan_order_identity_and_done(setting, tmp_path):
    cells = _plan(setting, tmp_path)
    assert [(c.method, c.length, c.seed) for c in cells] == [
        (m, k, s) for m in ("merge", "tail-drop") for k in (4, 32) for s in (0, 1)]
    assert len({c.cell_id for c in cells}) == len(cells) and not any(c.done for c in cells)
    c = cells[1]
    assert (c.identity["method"], c.identity["length"], c.identity["seed"]) == ("merge", 4, 1)
    assert c.identity["checkpoint_hash"] == "m" * 64 and "metric_spec" in c.identity  # the id's key, unchanged
    # a record of one cell is written: planning again marks that cell, and only it, done
    ResultStore(tmp_path).write(build_record(c.identity, {"gfid": 1.0}))
    again = _plan(setting, tmp_path)
    assert [x.cell_id for x in again] == [x.cell_id for x in cells]
    assert [x.done for x in again] == [x.cell_id == c.cell_id for x in cells]


@pytest.mark.parametrize("lengths, why", [([0], "0 is outside 1..32"), ([33], "33 is outside 1..32"),
                                          ([4, 4], "4 is given twice")])
def test_lengths_are_refused_at_planning(setting, tmp_path, lengths, why):
    with pytest.raises(UserError) as e:
        _plan(setting, tmp_path, lengths=lengths)
    msg = str(e.value)
    assert msg.startswith("--lengths: ") and why in msg and "\n" not in msg


def test_local_run_and_executors_plan_the_same_cells(tmp_path):
    """The local sweep's planned cells (computed, then found done) are the cells the job-array
    submitter plans, with the same ids, and evaluate's frame holds exactly their records in order."""
    import vltbench
    from vltbench.evaluation.executors import _checkpoint_shas
    from vltbench.evaluation.sweep import run_sweep

    cfg = load_config("tiny", TINY, {"eval.n_samples": 20, "eval.batch_size": 8})
    res = tmp_path / "res"
    spec = SweepSpec(cfg, ["tail-drop"], [8, 4], [0], res)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample warnings of the test config
        first = run_sweep(spec)
        again = run_sweep(spec)
    ids = [c.cell_id for c in first.cells]
    assert [(c.length, c.seed) for c in first.cells] == [(8, 0), (4, 0)] and not any(c.done for c in first.cells)
    assert sorted(p.stem for p in first.written) == sorted(ids) and not first.skipped
    assert [c.cell_id for c in again.cells] == ids and all(c.done for c in again.cells)
    assert again.skipped == ids and not again.written

    ds = load_data(cfg.data)
    extractor = extractor_for(cfg)  # as the submitter builds it (no device)
    shas, untrained = _checkpoint_shas(spec, ds)
    submitted = plan(spec, shas, ds, measurement_spec(cfg, extractor, RealSets(cfg, ds, extractor)))
    assert not untrained and [c.cell_id for c in submitted] == ids and all(c.done for c in submitted)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = vltbench.evaluate("tail-drop", [8, 4], config=TINY, results=res, quiet=True,
                               overrides={"eval.n_samples": 20, "eval.batch_size": 8})
    assert list(df["cell_id"]) == ids


def test_committed_records_are_planned_with_their_cell_ids():
    """Every committed reference record is the plan's cell for its (method, K, seed, checkpoint) on its
    preset, found done: the identities (and so the ids) are built as when the records were written."""
    import json
    from pathlib import Path

    from vltbench import api
    from vltbench.evaluation.extractors.domains import resolve_extractor

    ref = Path(__file__).parents[1] / "results" / "reference"
    if not ref.is_dir():
        pytest.skip("no committed results/reference in this checkout")
    recs = [json.loads(p.read_text()) for p in sorted(ref.glob("*/*.json"))]
    assert recs
    settings = {}
    for rec in recs:
        ident = rec["identity"]
        if ident["preset"] not in settings:
            cfg = api.load_config(ident["preset"])
            cfg.eval.extractor = resolve_extractor(cfg)  # as evaluate does
            ds = load_data(cfg.data)
            extractor = extractor_for(cfg)
            settings[ident["preset"]] = cfg, ds, measurement_spec(cfg, extractor, RealSets(cfg, ds, extractor))
        cfg, ds, mspec = settings[ident["preset"]]
        spec = SweepSpec(cfg, [ident["method"]], [ident["length"]], [ident["seed"]], ref)
        [cell] = plan(spec, {ident["method"]: ident["checkpoint_hash"]}, ds, mspec)
        assert (cell.cell_id, cell.done) == (rec["cell_id"], True), rec["cell_id"]
