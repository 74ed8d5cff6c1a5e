"""The leaderboard in a terminal (vltbench.reporting.terminal), rendered by rich at fixed widths from the
committed records: the summary view fits, cuts no cell, keeps the floor / ceiling rows and the verdicts;
the diagnostics view shows every other column; markdown and csv keep every column, byte for byte."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from vltbench.evaluation.store import load_frame
from vltbench.reporting.formats import render
from vltbench.reporting.tables import cell_texts, leaderboard
from vltbench.reporting.terminal import MAX_COLUMNS, SUMMARY_KEYS, print_tables, rich_tables

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference"
FAILURE = ROOT / "results" / "small_rgb" / "tiny-on-shapes"  # one that cannot tell methods apart
SUMMARY = ["method", "K", "seeds", "gFD_mnist-cnn", "CFG w", "rFD_mnist-cnn", "PSNR (dB)", "GFLOPs/img", "Pareto"]


@pytest.fixture(scope="module")
def tables():
    return leaderboard(load_frame(REFERENCE))


def render_text(tables, width: int, view: str = "summary") -> str:
    con = Console(width=width, record=True, file=io.StringIO())
    print_tables(tables, con, view)
    text = con.export_text()
    print(text)  # pytest -s shows what a terminal of this width shows
    return text


def boards(tables, width: int, view: str) -> list[list[str]]:
    """The headers of each leaderboard table in the view (paired-difference tables left out)."""
    con = Console(width=width, file=io.StringIO())
    return [[h.plain if hasattr(h, "plain") else str(h) for h in (c.header for c in r.columns)]
            for r in rich_tables(tables, view, con) if hasattr(r, "columns") and r.columns[1].header == "K"]


def squeeze(header: str) -> str:
    """A header without the line breaks (and spaces) a narrow column wraps it at."""
    return re.sub(r"\s+", "", header)


def pieces(cell: str) -> list[str]:
    """What a cell may be broken into: its words, split after "/" (never inside a number or a name)."""
    return [p for w in cell.replace(" ± ", " ±").split() for p in re.split(r"(?<=/)", w) if p]


@pytest.mark.parametrize("width", [80, 120])
def test_summary_fits_and_cuts_nothing(tables, width):
    t = tables[0]
    text = render_text(tables, width)
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    words = set(re.findall(r"\S+", text))
    for row in cell_texts(t):  # every cell of the shown columns whole: no piece folded or cut
        for j in (0, 1, 2, *(3 + i for i, c in enumerate(t.columns) if c.key in SUMMARY_KEYS)):
            for p in pieces(row[j][0]):
                assert any(p in w for w in words), (p, row[j][0])  # a folded piece is split over lines
    for label in ("real (held-out, n=500)", "merge tokenizer @K=N (recon)", "nested-dropout"):
        assert all(w in words for w in label.split())  # the floor and ceiling rows, wrapped at most
    [heads] = boards(tables, width, "summary")
    assert [squeeze(h) for h in heads] == [squeeze(h) for h in SUMMARY] and len(heads) <= MAX_COLUMNS
    if width >= 120:
        assert all(h in text for h in SUMMARY)
        assert "real (held-out, n=500)" in text and "merge tokenizer @K=N (recon)" in text
    # the verdicts of the paired differences of the headline, and the summary lines
    flat = " ".join(text.split())  # lines joined: what wrapped at this width reads as one
    assert "paired differences a − b of gFD_mnist-cnn (lower is better)" in flat
    [d] = [d for name, d in t.differences.items() if name.startswith("gFD")]
    assert flat.count(" better ") == (d["verdict"] != "undecided").sum() > 0  # every decided verdict
    assert flat.count("undecided") == (d["verdict"] == "undecided").sum()
    assert "class acc." not in flat  # its differences are a diagnostic
    assert "Pareto frontier (gFD_mnist-cnn" in flat and "AUC of gFD_mnist-cnn" in flat
    assert "x-len dist→N" not in flat and "Fréchet→full" not in flat  # notes of columns not shown
    assert "n_samples=500 generated" in flat  # how the numbers were measured


@pytest.mark.parametrize("width", [80, 120])
def test_diagnostics_view_shows_the_other_columns(tables, width):
    t = tables[0]
    text = render_text(tables, width, "diagnostics")
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    heads = boards(tables, width, "diagnostics")
    assert all(len(h) <= MAX_COLUMNS and h[:3] == ["method", "K", "seeds"] for h in heads)
    shown = [squeeze(h) for hs in heads for h in hs[3:]]
    expected = [squeeze(c.header) for c in t.columns if c.key not in SUMMARY_KEYS]
    assert sorted(shown) == sorted(expected) and len(expected) >= 15
    assert {"SSIM", "KID_mnist-cnn", "Prec.", "Rec.", "classacc.", "CKNNA", "DiTparams(M)"} <= set(shown)
    flat = " ".join(text.split())
    assert "paired differences a − b of class acc." in flat and "Fréchet→full: per family" in flat


def test_cannot_tell_verdict_in_the_summary():
    if not FAILURE.is_dir():
        pytest.skip("the committed failure reproduction is absent")
    text = render_text(leaderboard(load_frame(FAILURE)), 80)
    assert "this comparison cannot tell methods apart" in text and "…" not in text


def test_markdown_and_csv_keep_every_column(tables):
    """results/leaderboard.md and .csv are the committed rendering of the reference: unchanged, every column."""
    assert render(tables, "md") == (ROOT / "results" / "leaderboard.md").read_text()
    assert render(tables, "csv") == (ROOT / "results" / "leaderboard.csv").read_text()
    header = next(ln for ln in render(tables, "md").splitlines() if ln.startswith("| method"))
    assert header.count("|") - 1 == 3 + len(tables[0].columns) + 1  # method, K, seeds, every metric, Pareto


def test_the_docs_show_what_the_terminal_shows(tables):
    """docs/reading-results.md quotes the start of the summary at 100 columns: it is the rendering's."""
    page = (ROOT / "docs" / "reading-results.md").read_text()
    quoted = re.search(r"```text\n(.*?)```", page, re.S).group(1).splitlines()
    shown = [line.rstrip() for line in render_text(tables, 100).splitlines()]
    assert len(quoted) >= 10 and quoted == shown[:len(quoted)]
