"""The small-rgb preset (issue 30) is the recipe its sizing row measured, and refuses to run without a folder."""

import json
from pathlib import Path

from helpers import run_cli_here

from vltbench.core.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SIZING = ROOT / "results" / "small_rgb" / "sizing.jsonl"
MEASURED_AS = "G-data2-w96-d16-6k-refine32"  # the sizing row whose tokenizer the preset ships


def test_preset_is_the_measured_sizing_row():
    import sys
    sys.path.insert(0, str(ROOT / "scripts"))
    from size_small_rgb import BASE

    row = next(r for r in map(json.loads, SIZING.read_text().splitlines()) if r["tag"] == MEASURED_AS)
    sets = {"data.name": "folder", **BASE, **{k: json.loads(v) if v[0].isdigit() else v
                                             for k, v in (s.split("=", 1) for s in row["sets"])}}
    sized = load_config("tiny", overrides=sets).model_dump()
    preset = load_config("small-rgb").model_dump()
    assert preset["preset"] == "small-rgb"
    for section in ("data", "tokenizer", "dit", "sampler", "eval", "lengths", "methods"):
        assert preset[section] == sized[section], section


def test_preset_needs_a_data_root(tmp_path):
    r = run_cli_here("run", "--preset", "small-rgb", "--method", "merge", "--lengths", "4,32", "--results", tmp_path,
                     "--dry-run")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]  # after the extractor note
    assert last.startswith("error:") and "--data-root" in last


def test_preset_lengths_are_checked_against_its_n(tmp_path):
    r = run_cli_here("run", "--preset", "small-rgb", "--method", "merge", "--lengths", "4,64", "--results", tmp_path,
                     "--dry-run")
    assert r.returncode == 2 and "N=32" in r.stderr and "preset small-rgb" in r.stderr
