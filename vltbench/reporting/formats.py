"""The formats a leaderboard renders to: Markdown and CSV (the tables), HTML (the page's tables, no figures)."""

from __future__ import annotations

from vltbench.core.errors import UserError

from .page import leaderboard_page
from .tables import Table, csv_text, markdown

FORMATS = ("md", "csv", "html")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def render(tables: list[Table], fmt: str = "md") -> str:
    check_format(fmt)
    if fmt == "md":
        return "\n".join(markdown(t) for t in tables) if tables else "No result records.\n"
    if fmt == "html":
        return leaderboard_page(tables)
    return csv_text(tables)
