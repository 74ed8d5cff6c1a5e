"""The package's structure rules (docs/architecture.md): no module over 600 lines, every import pointing
down the stages, and the Python API's signatures as documented (a change to one of them is a change of
the public API, made here on purpose)."""

import ast
import inspect
from pathlib import Path

import vltbench
from vltbench import api

MAX_LINES = 600
PACKAGE = Path(vltbench.__file__).parent

# str(inspect.signature(...)) of each public function; annotations read as written (postponed).
SIGNATURES = {
    "evaluate": "(methods: 'str | Sequence[str]', lengths: 'str | int | Sequence[int]', *, preset: 'str' = 'tiny', "
                "config: 'str | Path | None' = None, overrides: 'Mapping[str, Any] | Sequence[str] | None' = None, "
                "seeds: 'str | int | Sequence[int]' = (0,), results: 'str | Path' = PosixPath('results/runs'), "
                "train: 'bool' = True, executor: 'str' = 'local', slurm_partition: 'str | None' = None, "
                "overwrite: 'bool' = False, checkpoint: 'str | Path | None' = None, generator: 'str | None' = None, "
                "n_samples: 'int | None' = None, extractor: 'str | None' = None, "
                "inception_weights: 'str | Path | None' = None, data_root: 'str | Path | None' = None, "
                "device: 'str | None' = None, quiet: 'bool | None' = None, save_samples: 'bool' = False, "
                "dry_run: 'bool' = False, throughput: 'float | None' = None) -> 'pd.DataFrame'",
    "train": "(method: 'str', *, preset: 'str' = 'tiny', config: 'str | Path | None' = None, "
             "overrides: 'Mapping[str, Any] | Sequence[str] | None' = None, generator: 'str | None' = None, "
             "lengths: 'str | int | Sequence[int] | None' = None, out: 'str | Path | None' = None, "
             "data_root: 'str | Path | None' = None, device: 'str | None' = None, "
             "quiet: 'bool | None' = None, tokenizer: 'str | Path | None' = None) -> 'Path'",
    "leaderboard": "(results: 'str | Path | pd.DataFrame' = PosixPath('results/runs'), *, "
                   "frame: 'bool' = False) -> 'list[Table] | pd.DataFrame'",
    "check": "(baseline: 'str | Path | pd.DataFrame', candidate: 'str | Path | pd.DataFrame' = "
             "PosixPath('results/runs'), *, report: 'str | Path | None' = None, "
             "min_effect: 'float | Mapping[str, float] | None' = None, z: 'float' = 2.0, "
             "metrics: 'str | Sequence[str] | None' = None, "
             "method_map: 'str | Mapping[str, str] | Sequence[str] | None' = None, "
             "lengths: 'str | int | Sequence[int] | None' = None, require_all: 'bool' = False) -> 'CheckReport'",
    "flops": "(method: 'str', lengths: 'str | int | Sequence[int]', *, preset: 'str' = 'tiny', "
             "config: 'str | Path | None' = None, overrides: 'Mapping[str, Any] | Sequence[str] | None' = None, "
             "data_root: 'str | Path | None' = None, num_classes: 'int | None' = None) -> 'pd.DataFrame'",
    "plot": "(results: 'str | Path | pd.DataFrame' = PosixPath('results/runs'), "
            "out: 'str | Path | None' = None) -> 'list[Path]'",
    "report": "(results: 'str | Path | pd.DataFrame' = PosixPath('results/runs'), "
              "out: 'str | Path | None' = None) -> 'Path'",
    "import_lgm": "(tokenizer: 'str | Path', generator: 'str | Path | None', out: 'str | Path', *, "
                  "latent_stats: 'str | Path | None' = None, ema: 'bool' = True, preset: 'str' = 'lgm-official-xl', "
                  "config: 'str | Path | None' = None, "
                  "overrides: 'Mapping[str, Any] | Sequence[str] | None' = None) -> 'Path'",
    "import_titok": "(family: 'str', weights: 'str | Path', out: 'str | Path', *, "
                    "pixel_decoder: 'str | Path | None' = None, official_config: 'str | Path | None' = None, "
                    "preset: 'str' = 'titok-official', config: 'str | Path | None' = None, "
                    "overrides: 'Mapping[str, Any] | Sequence[str] | None' = None) -> 'Path'",
    "score": "(samples: 'str | Path', *, reference: 'str | Path' = 'dataset', name: 'str | None' = None, "
             "preset: 'str' = 'tiny', config: 'str | Path | None' = None, "
             "overrides: 'Mapping[str, Any] | Sequence[str] | None' = None, extractor: 'str | None' = None, "
             "inception_weights: 'str | Path | None' = None, data_root: 'str | Path | None' = None, "
             "results: 'str | Path' = 'results/scores', seed: 'int' = 0, device: 'str | None' = None, "
             "quiet: 'bool | None' = None) -> 'dict'",
    # parsed and validated in vltbench.inputs, exported by vltbench.api and `import vltbench`
    "load_config": "(preset: 'str' = 'tiny', config: 'str | Path | None' = None, "
                   "overrides: 'Mapping[str, Any] | Iterable[str] | None' = None, **named: 'Any') -> 'Config'",
}


def test_public_api_signatures():
    assert set(vltbench.__all__) == {"__version__", "UserError", *SIGNATURES}
    for name, expected in SIGNATURES.items():
        fn = getattr(vltbench, name)
        assert fn is getattr(api, name), name
        assert str(inspect.signature(fn)) == expected, name


def test_no_module_over_600_lines():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert sizes and "api.py" in sizes
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


def test_every_package_is_in_the_wheel():
    """The wheel's packages are found (pyproject's packages.find), never listed by hand or remapped, and
    every folder of vltbench/ holding code or presets is one of them: a folder without __init__.py would be
    left out of a wheel while an editable install still imports it (`pip install .` then fails at import)."""
    import tomllib

    from setuptools import find_packages

    root = PACKAGE.parent
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "find" in setup["packages"] and "package-dir" not in setup, "let packages.find list the packages"
    found = set(find_packages(str(root), include=setup["packages"]["find"]["include"]))
    folders = {".".join(("vltbench", *d.relative_to(PACKAGE).parts)) for d in [PACKAGE, *PACKAGE.rglob("*")]
               if d.is_dir() and "__pycache__" not in d.parts and any(d.glob("*.py")) | any(d.glob("*.yaml"))}
    assert folders <= found, f"add an __init__.py to: {sorted(folders - found)}"
    assert {"vltbench.methods.merge", "vltbench.configs", "vltbench.evaluation.extractors"} <= found


# The stages of docs/architecture.md, in order: a module imports only from its own stage or those above.
STAGES = ("core", "data", "models", "training", "evaluation", "reporting")
TOP = ("inputs", "api", "cli")  # over every stage
# Known upward imports, each lazy (inside a function): (importing module, imported module).
UPWARD_ALLOWED = {("evaluation/dry_run.py", "vltbench.api")}


def test_imports_point_down_the_stages():
    upward = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) < 2 or rel.parts[0] not in STAGES:
            continue
        mine = STAGES.index(rel.parts[0])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] != "vltbench" or len(parts) < 2:
                    continue
                if parts[1] in TOP or (parts[1] in STAGES and STAGES.index(parts[1]) > mine):
                    upward.add((rel.as_posix(), name))
    assert upward == UPWARD_ALLOWED, "an import points up the stages of docs/architecture.md (or one was removed)"
