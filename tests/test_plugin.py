"""A third-party method registered through the real `vltbench.methods` entry-point path.

The plugin code is the "Writing a method" example (docs/writing-a-method.md; examples/contiguous_merge); it is laid
out as an installed distribution (package + .dist-info with entry_points.txt) on PYTHONPATH, so
importlib.metadata discovers it exactly as it would after `pip install`."""

import shutil
import tomllib
from pathlib import Path

import pytest

from helpers import TINY, run_cli
from vltbench.core import registry
from vltbench.core.errors import UserError

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "contiguous_merge"


def _install_fake_dist(site: Path) -> None:
    shutil.copytree(EXAMPLE / "vltbench_contiguous_merge", site / "vltbench_contiguous_merge")
    info = site / "vltbench_contiguous_merge-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vltbench-contiguous-merge\nVersion: 0.1.0\n")
    eps = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["entry-points"]["vltbench.methods"]
    lines = "".join(f"{name} = {target}\n" for name, target in eps.items())
    (info / "entry_points.txt").write_text(f"[vltbench.methods]\n{lines}")


def test_readme_example_is_the_tested_plugin():
    readme = (ROOT / "docs" / "writing-a-method.md").read_text()
    code = (EXAMPLE / "vltbench_contiguous_merge" / "__init__.py").read_text()
    body = code[code.index("class ContiguousMerge"):].strip()
    assert body in readme


def test_plugin_appears_and_runs(tmp_path):
    site = tmp_path / "site"
    _install_fake_dist(site)
    env = {"PYTHONPATH": str(site)}
    r = run_cli("methods", env=env)
    assert r.returncode == 0 and "contiguous-merge" in r.stdout, r.stdout + r.stderr
    r = run_cli("run", "--method", "contiguous-merge", "--lengths", "3,32", "--config", TINY,
                "--results", tmp_path / "res", "-q", env=env)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "res" / "contiguous-merge").glob("*.json"))) == 2


def test_duplicate_and_unknown_names():
    with pytest.raises(UserError, match="already registered"):
        registry.register("merge", "somewhere:Else")
    with pytest.raises(UserError, match="did you mean tail-drop"):
        registry.get("tail-dorp")


def test_duplicate_entry_point_rejected(tmp_path):
    site = tmp_path / "site"
    _install_fake_dist(site)
    ep = site / "vltbench_contiguous_merge-0.1.0.dist-info" / "entry_points.txt"
    ep.write_text("[vltbench.methods]\nmerge = vltbench_contiguous_merge:ContiguousMerge\n")
    r = run_cli("methods", env={"PYTHONPATH": str(site)})
    assert r.returncode == 2 and "registered twice" in r.stderr and "Traceback" not in r.stderr
