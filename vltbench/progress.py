"""Progress bars with ETA (rich); `quiet` turns them off. Without a TTY rich prints no live bar."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
QUIET = False


def set_quiet(value: bool) -> None:
    global QUIET
    QUIET = value


def log(msg: str) -> None:
    if not QUIET:
        console.print(msg, highlight=False)


class _Task:
    def __init__(self, progress, task, total):
        self.progress, self.task, self.total = progress, task, total

    def advance(self, n: int = 1, **fields) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=n, **fields)


@contextmanager
def task(description: str, total: int):
    """with task("train tokenizer", steps) as t: ... t.advance()"""
    if QUIET:
        yield _Task(None, None, total)
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        yield _Task(progress, progress.add_task(description, total=total, info=""), total)
