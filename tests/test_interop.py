"""Interop with the field's evaluator: --save-samples (ADM-format .npz), `vltbench score` (external samples,
labelled external), and --dry-run (planned cells and costs, nothing written)."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, run_cli_here
from PIL import Image

import vltbench
from vltbench.core.errors import UserError


def _files(*roots):
    """Every file under the roots with its size and mtime: what a command must leave unchanged."""
    out = {}
    for root in roots:
        for p in Path(root).rglob("*") if Path(root).exists() else []:
            if p.is_file():
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """merge at K = 4 on the tiny test config, with --save-samples (through the CLI)."""
    cache = os.environ.get("VLTBENCH_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")
    res = tmp_path_factory.mktemp("interop") / "results"
    r = run_cli_here("run", "--method", "merge", "--lengths", "4", "--config", TINY, "--results", res, "-q",
                     "--save-samples", env={"VLTBENCH_CACHE": cache, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    (path,) = res.glob("merge/*.json")
    return res, path, json.loads(path.read_text())


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI run above (OMP_NUM_THREADS=1): the same float sums
    yield
    torch.set_num_threads(old)


def test_saved_npz_is_the_adm_format_and_the_cells_samples(saved):
    res, path, rec = saved
    art = rec["artifacts"]["samples_npz"]
    npz = path.parent / art["path"]
    assert hashlib.sha256(npz.read_bytes()).hexdigest() == art["sha256"] and art["bytes"] == npz.stat().st_size
    n = rec["identity"]["metric_spec"]["n_samples"]
    with np.load(npz) as z:
        assert sorted(z.files) == ["arr_0", "arr_1"]
        images, labels = z["arr_0"], z["arr_1"]
    assert images.dtype == np.uint8 and images.shape == (n, 16, 16, 3) and art["shape"] == list(images.shape)
    assert labels.dtype == np.int64 and (labels == np.arange(n) % 10).all()
    # the sample grid holds the cell's first 8 gFID samples: the .npz holds the very same pixels
    grid = np.asarray(Image.open(path.parent / rec["artifacts"]["samples"]))
    assert np.array_equal(grid, np.concatenate(list(images[:8]), axis=1))
    assert not list(res.rglob(".*.tmp")), "a shard or temp file was left behind"


def test_score_of_saved_samples_equals_the_cells_metrics(saved, tmp_path, one_thread):
    _, path, rec = saved
    npz = path.parent / rec["artifacts"]["samples_npz"]["path"]
    from vltbench.evaluation.score import SampleSource

    with np.load(npz) as z:
        arr0 = z["arr_0"]
    back = torch.cat(list(SampleSource(npz).batches(7))).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(back, arr0)  # vltbench score reads the file bit-identically
    out = vltbench.score(npz, config=TINY, results=tmp_path / "scores", quiet=True)
    assert out["origin"] == "external" and out["identity"]["samples"]["sha256"] == hashlib.sha256(
        npz.read_bytes()).hexdigest()
    assert abs(out["metrics"]["gfid"] - rec["metrics"]["gfid"]) <= 1e-6
    assert abs(out["metrics"]["kid"] - rec["metrics"]["kid"]) <= 1e-6
    assert Path(out["path"]).is_file()
    again = vltbench.score(npz, config=TINY, results=tmp_path / "scores", quiet=True)
    assert again["path"] == out["path"]  # the same score is kept, never duplicated
    # external records are no cells: the tables of a folder holding both read only the cell
    assert len(vltbench.evaluate("merge", [4], config=TINY, results=path.parents[1], train=False,
                                 quiet=True)) == 1


def test_score_a_folder_against_a_folder(saved, tmp_path, one_thread):
    _, path, rec = saved
    with np.load(path.parent / rec["artifacts"]["samples_npz"]["path"]) as z:
        images = z["arr_0"]
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, a in enumerate(images):
        Image.fromarray(a).save(folder / f"{i:04d}.png")
    out = vltbench.score(folder, config=TINY, results=tmp_path / "s", quiet=True)
    assert abs(out["metrics"]["gfid"] - rec["metrics"]["gfid"]) <= 1e-6  # PNG is lossless: the same images
    same = vltbench.score(folder, reference=folder, config=TINY, results=tmp_path / "s", quiet=True)
    assert abs(same["metrics"]["gfid"]) < 1e-6  # a set against itself
    assert same["identity"]["metric_spec"]["source"] == "folder"


def test_score_refuses_bad_samples(tmp_path):
    with pytest.raises(UserError, match="do not exist"):
        vltbench.score(tmp_path / "none.npz", config=TINY, results=tmp_path / "s")
    np.savez(tmp_path / "f.npz", arr_0=np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(UserError, match="expected uint8"):
        vltbench.score(tmp_path / "f.npz", config=TINY, results=tmp_path / "s")
    (tmp_path / "t.npz").write_text("text")
    with pytest.raises(UserError, match="not an .npz"):
        vltbench.score(tmp_path / "t.npz", config=TINY, results=tmp_path / "s")


def test_shards_merge_into_one_npz_in_rank_order(tmp_path):
    from vltbench.evaluation.sample_export import SampleShard, merge_shards

    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 256, (n, 3, 5, 6), dtype=np.uint8) for n in (4, 3)]
    shards = []
    for p in parts:
        s = SampleShard(tmp_path, "cell")
        list(s.tee(torch.from_numpy(b) for b in (p[:2], p[2:])))
        shards.append((s, s.finish()))
    merge_shards([f for _, f in shards], 10, tmp_path / "out.npz")
    for s, _ in shards:
        s.close()
    with np.load(tmp_path / "out.npz") as z:
        assert np.array_equal(z["arr_0"], np.concatenate(parts).transpose(0, 2, 3, 1))
        assert (z["arr_1"] == np.arange(7) % 10).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_dry_run_lists_cells_and_costs_and_writes_nothing(saved, tmp_path, monkeypatch):
    res, path, rec = saved
    cache = os.environ["VLTBENCH_CACHE"]
    before = _files(res, cache)
    df = vltbench.evaluate("merge", [4, 8], config=TINY, results=res, dry_run=True, throughput=100.0, quiet=True)
    assert _files(res, cache) == before
    assert list(df.length) == [4, 8] and list(df.status) == ["done", "to compute"]
    assert df.cell_id[0] == rec["cell_id"] and df.est_s[0] == 0
    from vltbench.models.flow import sampling_nfe

    cfg, c = vltbench.load_config(config=TINY), rec["compute"]
    s = cfg.sampler
    # the counted costs are the record's own per-image FLOPs times the config's counts
    unguided = cfg.eval.n_samples * (c["dit_forward_gflops"] * sampling_nfe(s.steps, s.shift, 1.0, s.cfg_interval)[0]
                                     + c["decoder_gflops"])
    assert df.unguided_gflops[0] == pytest.approx(unguided, rel=1e-6)
    assert df.est_s[1] == pytest.approx(2 * df.total_gflops[1] / 100.0)
    # no K = N cell: the K = N samples xlen_distance needs were cached by the K = 4 cell, so counted nowhere
    assert list(df.full_length_gflops) == [0, 0]
    assert df.total_gflops[1] == pytest.approx(df[["search_gflops", "unguided_gflops", "guided_gflops",
                                                   "recon_gflops"]].iloc[1].sum())
    with_n = vltbench.evaluate("merge", [4, 8, 32], config=TINY, results=res, dry_run=True, throughput=100.0,
                               quiet=True)  # with a K = N cell they are its unguided pass
    assert (with_n.full_length_gflops == 0).all()
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("VLTBENCH_CACHE", str(tmp_path / "empty-cache"))  # untrained whatever ran before
    df = vltbench.evaluate("tail-drop", [4], config=TINY, results=fresh, dry_run=True, throughput=100.0, quiet=True)
    assert list(df.status) == ["needs training"] and df.total_gflops[0] > 0 and not fresh.exists()
    # nothing cached: the K = N samples count once per seed, on its first cell to compute, as a K = N
    # cell's unguided pass would
    df = vltbench.evaluate("tail-drop", [4, 8], config=TINY, results=fresh, dry_run=True, seeds=[0, 1],
                           throughput=100.0, quiet=True)
    full = vltbench.evaluate("tail-drop", [32], config=TINY, results=fresh, dry_run=True, throughput=100.0, quiet=True)
    first = (df.length == 4).to_numpy()
    assert np.allclose(df.full_length_gflops[first], full.unguided_gflops[0], rtol=1e-9)
    assert (df.full_length_gflops[~first] == 0).all() and not fresh.exists()


def test_dry_run_of_a_paper_preset_without_data():
    df = vltbench.evaluate("merge", [32, 128], preset="imagenet256", dry_run=True, throughput=1000.0, quiet=True)
    assert list(df.status) == ["unknown", "unknown"] and (df.total_gflops > 0).all()
    assert df.total_gflops[1] > df.total_gflops[0]
    assert any("dataset not available" in n for n in df.attrs["notes"])
