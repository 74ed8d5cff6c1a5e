"""The docs' code blocks: every shell and Python block a user would run is run here, or says why not.

A fenced block in README.md or docs/*.md must name its language. Shell (bash, sh, shell, console) and
Python blocks run unless the line just before the fence is `<!-- not run: REASON -->` (a GPU, the
released weights, minutes of training ...); `<!-- run: exit N -->` runs a block that must exit with N
(an error example: it also prints an `error:` line). Shell blocks run with bash -e in a scratch folder
holding a copy of results/reference, with this interpreter's scripts first on PATH and a scratch
$VLTBENCH_CACHE; the Python blocks of one page run in order in one namespace, in a fresh interpreter.
The site itself is built by `mkdocs build --strict` in .ci/run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
PYTHON = {"python", "py"}
FENCE = re.compile(r"^(```|~~~)(.*)$")
MARKER = re.compile(r"^<!--\s*(not run|run)\s*:\s*(.*?)\s*-->$")
README_WORDS = 1500
TIMEOUT_S = 180


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: tuple[str, str] | None  # ("not run", reason) or ("run", "exit N")

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(2).strip().split(" ")[0].lower()
        j = start + 1
        while j < len(lines) and not lines[j].startswith(m.group(1)):
            j += 1
        before = next((lines[k].strip() for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        mk = MARKER.match(before)
        out.append(Block(page, start + 1, lang, "\n".join(lines[start + 1:j]) + "\n",
                         (mk.group(1), mk.group(2)) if mk else None))
        i = j + 1
    return out


ALL = [b for p in PAGES for b in blocks(p)]
RUNNABLE = [b for b in ALL if b.lang in SHELL | PYTHON]


def expected_exit(b: Block) -> int:
    if b.marker and b.marker[0] == "run":
        m = re.fullmatch(r"exit (\d+)", b.marker[1])
        assert m, f"{b}: write the marker as <!-- run: exit N -->, not {b.marker[1]!r}"
        return int(m.group(1))
    return 0


def to_run(b: Block) -> bool:
    return b.lang in SHELL | PYTHON and not (b.marker and b.marker[0] == "not run")


def test_every_block_names_its_language_and_runnable_ones_are_run_or_say_why_not():
    problems = []
    for b in ALL:
        if not b.lang:
            problems.append(f"{b}: a fenced block without a language (bash, python, text, yaml, toml, ...)")
        if b.marker and b.marker[0] == "not run" and len(b.marker[1]) < 8:
            problems.append(f"{b}: <!-- not run: ... --> needs its reason")
        if b.marker and b.lang not in SHELL | PYTHON:
            problems.append(f"{b}: a run marker on a {b.lang or 'plain'} block, which is never run")
        if b.marker and b.marker[0] == "run":
            expected_exit(b)
    for page in PAGES:  # an indented (4-space) command outside a fence would escape the check
        inside = False
        for n, line in enumerate(page.read_text().splitlines(), 1):
            if FENCE.match(line):
                inside = not inside
            elif not inside and re.match(r"^ {4,}(\$ )?(vltbench|torchrun|python|pip) ", line):
                problems.append(f"{page.relative_to(ROOT)}:{n}: an indented command; put it in a fenced block")
    assert not problems, "\n".join(problems)
    assert any(to_run(b) for b in ALL) and any(not to_run(b) for b in RUNNABLE)


def test_readme_is_short_and_its_commands_are_getting_starteds():
    words = len((ROOT / "README.md").read_text().split())
    assert words <= README_WORDS, f"README.md has {words} words (at most {README_WORDS}: move details to docs/)"
    readme = [b.code for b in blocks(ROOT / "README.md") if b.lang in SHELL]
    started = {b.code for b in blocks(ROOT / "docs" / "getting-started.md") if b.lang in SHELL}
    assert len(readme) == 2 and set(readme) <= started, "README's set-up commands differ from docs/getting-started.md"


def test_readme_links_resolve():
    """mkdocs checks the links between docs pages; the README (outside the site) is checked here."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert targets, "the README links into the docs"
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, VLTBENCH_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", COLUMNS="120")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def scratch(tmp_path):
    work = tmp_path / "work"
    shutil.copytree(ROOT / "results" / "reference", work / "results" / "reference")
    return work


SHELL_BLOCKS = [b for b in RUNNABLE if b.lang in SHELL and to_run(b)]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=str)
def test_shell_block(block, scratch):
    want = expected_exit(block)
    p = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=scratch, env=_env(scratch.parent),
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert p.returncode == want, f"{block} exited {p.returncode}, not {want}:\n{block.code}\n{p.stdout}\n{p.stderr}"
    if want:
        assert re.search(r"^error: ", p.stderr, re.M), f"{block}: no `error:` line\n{p.stderr}"


DRIVER = """
import json, sys
ns = {"__name__": "__docs__"}
for where, code in json.load(sys.stdin):
    exec(compile(code, where, "exec"), ns)
"""

PY_PAGES = sorted({b.page for b in RUNNABLE if b.lang in PYTHON and to_run(b)})


@pytest.mark.parametrize("page", PY_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks(page, scratch):
    todo = [b for b in RUNNABLE if b.page == page and b.lang in PYTHON and to_run(b)]
    assert all(expected_exit(b) == 0 for b in todo), "Python blocks show errors with try/except, not an exit code"
    # each block compiled under its page:line, so a traceback names the block
    src = json.dumps([[str(b), b.code] for b in todo])
    p = subprocess.run([sys.executable, "-c", DRIVER], input=src, cwd=scratch, env=_env(scratch.parent),
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert p.returncode == 0, f"{page.name}: a block failed:\n{p.stdout}\n{p.stderr}"
