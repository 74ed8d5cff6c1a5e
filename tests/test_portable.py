"""Records mean the same on every machine: no absolute path in a written record or under results/."""

import json
import re
from pathlib import Path

from test_store import record

import vltbench
from vltbench.core.paths import cache_dir
from vltbench.evaluation.store import ResultStore, load_frame

ROOT = Path(__file__).parents[1]
# an absolute POSIX path of two or more parts, starting a word (not a URL's //, not a ratio such as 1/2)
ABSOLUTE = re.compile(r"""(?:^|[\s"'(=,\[])(/[\w.+-]+(?:/[\w.+-]+)+)""")


def absolute_paths(text: str) -> list[str]:
    return [m.group(1) for m in ABSOLUTE.finditer(text)]


def test_the_scan_finds_what_it_should():
    assert absolute_paths('"checkpoint": "/root/.cache/vltbench/x.safetensors"') == ["/root/.cache/vltbench/x.safetensors"]
    assert absolute_paths("weights (/home/u/.cache/torch/hub/checkpoints/vgg16.pth plus") != []
    assert absolute_paths("see https://github.com/a/b, K / N = 1/2, train/val, <cache>/checkpoints/tiny/m") == []


def test_no_absolute_path_under_results():
    found = {}
    for p in sorted((ROOT / "results").rglob("*")):
        if p.is_file() and p.suffix in (".json", ".jsonl", ".md", ".txt", ".csv", ".html", ".svg"):
            if hits := absolute_paths(p.read_text()):
                found[p.relative_to(ROOT).as_posix()] = hits[:3]
    assert found == {}, "records and tables must not hold machine paths (vltbench.core.paths.portable)"


def test_written_records_name_files_by_root(tmp_path, monkeypatch):
    """A checkpoint in the cache or the package is written from its root, any other one relative to the
    record; a data root elsewhere by its name. The cell id is unchanged, and the frame resolves the
    checkpoint to this machine's file again (where `vltbench plot` finds its loss logs)."""
    monkeypatch.setenv("VLTBENCH_CACHE", str(tmp_path / "cache"))
    package = Path(vltbench.__file__).parent
    cases = {"cached": cache_dir("checkpoints/tiny") / "merge-0123.safetensors",
             "shipped": package / "assets" / "tiny-merge.safetensors",
             "mine": tmp_path / "mine" / "ckpt.safetensors"}
    for seed, (name, ckpt) in enumerate(cases.items()):
        rec = record(seed=seed)
        rec["artifacts"]["checkpoint"] = str(ckpt)
        rec["config"] = {"data": {"name": "folder", "root": str(tmp_path / "shapes")}, "seed": seed}
        path = ResultStore(tmp_path / "res").write(rec)
        text = path.read_text()
        assert absolute_paths(text) == [], name
        written = json.loads(text)
        assert written["cell_id"] == rec["cell_id"] and written["config"]["data"]["root"] == "<elsewhere>/shapes"
        assert written["artifacts"]["checkpoint"] == {
            "cached": "<cache>/checkpoints/tiny/merge-0123.safetensors",
            "shipped": "<vltbench>/assets/tiny-merge.safetensors",
            "mine": "../../mine/ckpt.safetensors"}[name]
    df = load_frame(tmp_path / "res").sort_values("seed")
    assert df["checkpoint_path"].tolist() == [str(p) for p in cases.values()]
