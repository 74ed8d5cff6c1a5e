"""The leaderboard in a terminal (rich), in two views.

summary (the default): the table a person reads first, at most MAX_COLUMNS columns: method, K, seeds,
the headline distance, CFG w, rFID, PSNR, GFLOPs/img, Pareto; the floor and ceiling rows; the verdicts
of the paired differences of the headline; the discriminability verdict, the Pareto front and the AUC.
diagnostics: every other column (alignment, KID, P/R, class accuracies, parameters, ...), in tables of
related columns (by the pass that computes them) so that each one fits a terminal too.

The markdown, csv and html renderings (vltbench.reporting.formats) keep every column in one table.
Cells never end in "…": rich wraps a long cell at its spaces, or folds it.
"""

from __future__ import annotations

import re

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable
from rich.text import Text

from vltbench.core.errors import UserError
from vltbench.evaluation.metrics.specs import metric_spec

from .paired import MODEL_NOTE
from .tables import DIFFERENCE_HEADERS, Column, Table, cell_texts, difference_cells, summary_lines

VIEWS = ("summary", "diagnostics")
SUMMARY_KEYS = ("gfid", "cfg_scale", "rfid", "psnr", "sampling_gflops")  # after the headline, when KID leads
MAX_COLUMNS = 10  # method, K, seeds and Pareto included
# the diagnostics tables: the passes of a cell's evaluation (specs.PASSES) grouped by what they look at
THEMES = {
    "generation": ("guided", "unguided", "xlen"),
    "reconstruction and class accuracy": ("recon", "recon_quality", "classes"),
    "cost and size": ("flops",),
    "alignment of the K-token latents with the full-length ones": ("alignment",),
}
OTHER = "other"  # a plugin's metric that names no pass


def check_view(view: str) -> str:
    if view not in VIEWS:
        raise UserError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    return view


def _summary_columns(t: Table) -> list[Column]:
    keys = dict.fromkeys((t.headline, *SUMMARY_KEYS))
    return sorted((c for c in t.columns if c.key in keys), key=lambda c: list(keys).index(c.key))


def _theme(key: str) -> str:
    spec = metric_spec(key)
    done_by = spec.computed_by if spec is not None else None
    # undeclared per-record columns: parameter counts come with the FLOPs, align_* with the alignment
    done_by = done_by or {"params_": "flops", "align_": "alignment"}.get(key[:key.find("_") + 1])
    return next((name for name, passes in THEMES.items() if done_by in passes), OTHER)


def _diagnostic_groups(t: Table) -> list[tuple[str, list[Column]]]:
    """(theme, its columns) in the themes' order; a theme wider than a table is cut into parts."""
    shown = {c.key for c in _summary_columns(t)}
    rest = [c for c in t.columns if c.key not in shown]
    width = MAX_COLUMNS - 3  # method, K, seeds
    out = []
    for name in (*THEMES, OTHER):
        cols = [c for c in rest if _theme(c.key) == name]
        parts = [cols[i:i + width] for i in range(0, len(cols), width)]
        out += [(name + (f" ({j}/{len(parts)})" if len(parts) > 1 else ""), p) for j, p in enumerate(parts, 1)]
    return out


def _notes(t: Table, keys: set[str], general: bool) -> list[str]:
    """The notes about these columns, and (general) the ones about no column in particular."""
    return [n for n in summary_lines(t)
            if (keys & set(t.note_columns[n]) if n in t.note_columns else general)]


def _pieces(text: str, at: str) -> list[str]:
    """text split after each of its break points (spaces always, and the characters in at)."""
    return [w for w in re.split(rf"(?<=[\s{re.escape(at)}])", text) if w]


def _wrap(text: str, width: int, at: str) -> str:
    """text broken into lines of at most width at its break points (a longer piece stays whole)."""
    lines = [""]
    for w in _pieces(text, at):
        if lines[-1] and len(lines[-1] + w.rstrip()) > width:
            lines.append("")
        lines[-1] += w
    return "\n".join(line.rstrip() for line in lines)


def _widths(maxw: list[int], minw: list[int], room: int) -> list[int]:
    """Column widths within room: each column's longest line while they fit, else the widest column
    narrowed first, never below its longest unbreakable piece (rich folds only what still does not fit)."""
    widths = list(maxw)
    while sum(widths) > room:
        j = max((j for j in range(len(widths)) if widths[j] > minw[j]), key=lambda j: widths[j], default=None)
        if j is None:
            break
        widths[j] -= 1
    return widths


def _grid(title: str, heads: list[str], rows: list[tuple[str | None, list[tuple[str, bool]]]], console: Console,
          left: set[int]) -> RichTable:
    """A rich table whose widths this module sets (rich's own shrinking narrows every column alike and
    cuts numbers and names mid-word). Cells break at spaces ("6.92 ±2.83" at the ±), headers also after
    "-", "_" and "/"; best cells bold green with a *; rows styled (reference rows dim)."""
    texts = [[s + "*" if best else s for s, best in cells] for _, cells in rows]
    cols = list(zip(*texts)) if texts else [()] * len(heads)
    maxw = [max([len(h)] + [len(line) for s in col for line in s.split("\n")]) for h, col in zip(heads, cols)]
    minw = [max([len(p.strip()) for p in _pieces(h, "-_/")] + [len(p.strip()) for s in col for p in _pieces(s, "/")])
            for h, col in zip(heads, cols)]

    def build(widths: list[int], title: str | None = title) -> RichTable:
        rt = RichTable(title=escape(title) if title else None, box=box.SIMPLE_HEAD, title_justify="left", show_edge=False, pad_edge=False,
                       collapse_padding=True)
        for j, (h, w) in enumerate(zip(heads, widths)):  # fold: what still does not fit breaks, never "…"
            rt.add_column(escape(_wrap(h, w, "-_/")), justify="left" if j in left else "right", overflow="fold",
                          width=w)
        for (style, cells), row in zip(rows, texts):
            rt.add_row(*(Text(_wrap(s, w, "/"), style="bold green" if best else "")
                         for s, w, (_, best) in zip(row, widths, cells)), style=style)
        return rt

    overhead = console.measure(build([1] * len(heads), None)).maximum - len(heads)  # padding and borders
    return build(_widths(maxw, minw, console.width - overhead))


def _board(t: Table, title: str, cols: list[Column], pareto: bool, console: Console) -> RichTable:
    """Rows method | floor | ceiling with these columns; a reference row with no value in them left out."""
    index = {c.key: 3 + j for j, c in enumerate(t.columns)}
    pick = [0, 1, 2] + [index[c.key] for c in cols] + ([len(t.columns) + 3] if pareto else [])
    heads = ["method", "K", "seeds"] + [c.header for c in cols] + (["Pareto"] if pareto else [])
    rows = []
    for kind, row in zip(t.rows["row"], cell_texts(t)):
        cells = [(s.replace(" ± ", " ±"), best) for s, best in (row[i] for i in pick)]
        if kind == "method" or any(s != "—" for s, _ in cells[3:len(cells) - pareto]):
            rows.append((None if kind == "method" else "dim", cells))  # reference rows: never ranked
    return _grid(title, heads, rows, console, left={0})


def _differences(name: str, d, console: Console) -> RichTable:
    rows = [(None if r.verdict == "undecided" else "bold", [(c, False) for c in difference_cells(r)])
            for r in d.itertuples(index=False)]
    left = {j for j, h in enumerate(DIFFERENCE_HEADERS) if h in ("a", "b", "verdict")}
    return _grid(f"paired differences a − b of {name} (95% intervals)", list(DIFFERENCE_HEADERS), rows, console,
                 left)


def _lines(lines: list[str], first_bold: bool = False) -> Text:
    text = Text()
    for i, line in enumerate(lines):
        text.append(("" if i == 0 else "\n") + line, style="bold yellow" if first_bold and i == 0 else None)
    return text


def rich_tables(tables: list[Table], view: str = "summary", console: Console | None = None) -> list:
    """rich renderables for this console (its width), in this view (best values bold green with a *)."""
    check_view(view)
    console = console or Console()
    out = []
    for t in tables:
        if view == "summary":
            cols = _summary_columns(t)
            out.append(_board(t, t.title, cols, True, console))
            group = [f"{k}: {v}" for k, v in t.group.items() if k != "comparable_key"]
            out.append(_lines(_notes(t, {c.key for c in cols}, general=True), first_bold=not t.verdict.ok))
            out.append(_lines(group))
            diffs = list(t.differences.items())[:1]  # the headline's
        else:
            out.append(_lines([f"{t.title}: diagnostics", t.notes[0]], first_bold=True))  # the ± note
            group = t.title.split(":", 1)[0]
            for theme, cols in _diagnostic_groups(t):
                out += [Text(""), _board(t, f"{group} · {theme}", cols, False, console)]
                if notes := _notes(t, {c.key for c in cols}, general=False):
                    out.append(_lines(notes))
            diffs = list(t.differences.items())[1:]
        for name, d in diffs:
            out += [Text(""), _differences(name, d, console), Text(MODEL_NOTE)]
        out.append(Text(""))
    return out


def print_tables(tables: list[Table], console: Console | None = None, view: str = "summary") -> None:
    """Print the tables in this view; piped (no terminal), rich prints the same without colour, at
    $COLUMNS or 80 characters."""
    check_view(view)
    console = console or Console()
    if not tables:
        console.print("No result records.")
    for r in rich_tables(tables, view, console):
        console.print(r)
