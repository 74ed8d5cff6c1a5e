"""Progress and log lines on stderr; `quiet` turns them off.

In a terminal: rich progress bars with an ETA. Anywhere else (a pipe, a log file, a Slurm job):
plain whole lines that a log reader can grep, never wrapped, never with shortened times — a
progress line when a task starts, about every 10% of its work or every 30 s, and when it ends:

    merge: tokenizer 900/1000 (90%) elapsed 0:02:13 ETA 0:00:15 mse 0.0123
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
QUIET = False
EVERY_FRACTION = 0.1  # plain output: a line per 10% of the work ...
EVERY_S = 30.0  # ... or per 30 s, whichever comes first


def set_quiet(value: bool) -> None:
    global QUIET
    QUIET = value


def is_terminal() -> bool:
    """Whether stderr is a terminal (rich bars) rather than a pipe or a file (plain lines)."""
    return console.is_terminal


def _plain(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # the reader went away / stderr closed: logging is not the work
        pass


def log(msg: str) -> None:
    if QUIET:
        return
    if is_terminal():
        console.print(msg, highlight=False, markup=False)
    else:
        _plain(msg)


def clock(seconds: float) -> str:
    """H:MM:SS, in full (a log line is never too narrow for it)."""
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _Task:
    def __init__(self, progress, task, total):
        self.progress, self.task, self.total = progress, task, total

    def advance(self, n: int = 1, **fields) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=n, **fields)

    def grow(self, n: int) -> None:
        """Add n to the total: work found on the way (e.g. an extended guidance search)."""
        self.total += n
        if self.progress is not None:
            self.progress.update(self.task, total=self.total)


class _PlainTask(_Task):
    """Plain progress lines: counts, percentage, elapsed and ETA in full."""

    def __init__(self, description: str, total: int, completed: int = 0):
        super().__init__(None, None, total)
        self.description, self.done, self.info = description, completed, ""
        self.first = completed  # work done before this process started (a resumed stage) is not timed
        self.t0 = self.last_t = time.monotonic()
        step = max(1, int(total * EVERY_FRACTION)) if total else 1
        self.next_at = (completed // step + 1) * step
        self.step = step
        self.line("resumed" if completed else "started")

    def advance(self, n: int = 1, **fields) -> None:
        self.done += n
        if "info" in fields:
            self.info = str(fields["info"])
        now = time.monotonic()
        if self.done >= self.next_at or now - self.last_t >= EVERY_S:
            if self.total and self.done >= self.total:
                return  # said once, by finish()
            self.next_at = (self.done // self.step + 1) * self.step
            self.line()

    def line(self, word: str | None = None, *, final: bool = False) -> None:
        self.last_t = time.monotonic()
        elapsed = self.last_t - self.t0
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        if final:
            times = f"done in {clock(elapsed)}"
        elif word is not None:
            times = word
        else:
            rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
            eta = clock((self.total - self.done) / rate) if rate > 0 and self.total else "?"
            times = f"elapsed {clock(elapsed)} ETA {eta}"
        info = f" {self.info}" if self.info else ""
        _plain(f"{self.description} {count}{pct} {times}{info}")


@contextmanager
def task(description: str, total: int, completed: int = 0):
    """with task("train tokenizer", steps) as t: ... t.advance(). `completed`: work already done
    (a resumed stage); it counts towards the total but not towards the speed."""
    if QUIET:
        yield _Task(None, None, total)
        return
    if not is_terminal():
        t = _PlainTask(description, total, completed)
        yield t
        t.line(final=True)
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}", markup=False), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        yield _Task(progress, progress.add_task(description, total=total, completed=completed, info=""), total)
