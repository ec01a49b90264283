"""Progress for long commands: a rich bar on a terminal, plain lines without one.

Under nohup, Slurm or `ray job submit` there is no terminal and rich draws nothing, so
a run would print nothing for hours. `progress_for(console)` picks the reporter: on a
terminal the bar, otherwise `PlainProgress`, which prints one line every `every_s`
seconds (and the first and last one at once): what is done, the rate, the time left.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

PLAIN_EVERY_S = 30.0  # seconds between plain progress lines: often enough to see a run alive, rare enough to read a log


class Reporter(Protocol):
    """What a command reports progress to."""

    def update(self, task: str, *, done: int, total: int | None, unit: str, info: str = "") -> None:
        """Report that `done` of `total` `unit`s of `task` are done."""

    def close(self) -> None:
        """Finish the display."""


def duration(seconds: float) -> str:
    """Return seconds as a short human duration: 42 s, 12.5 min, 47.0 h."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class PlainProgress:
    """Plain lines, one per task every `every_s` seconds: `train: 120/600 steps (20%), 0.45 steps/s, 17.8 min left`."""

    def __init__(self, console: Console, *, every_s: float = PLAIN_EVERY_S) -> None:
        self.console = console
        self.every_s = every_s
        self.started: dict[str, tuple[float, int]] = {}  # task -> (time, done) of its first report
        self.printed: dict[str, float] = {}  # task -> time of its last line

    def update(self, task: str, *, done: int, total: int | None, unit: str, info: str = "") -> None:
        """Print a line when the task starts, finishes, or `every_s` has passed since its last line."""
        now = time.monotonic()
        first_time, first_done = self.started.setdefault(task, (now, done))
        finished = total is not None and done >= total
        if task in self.printed and not finished and now - self.printed[task] < self.every_s:
            return
        self.printed[task] = now
        elapsed = now - first_time
        rate = (done - first_done) / elapsed if elapsed > 0 and done > first_done else math.nan
        parts = [
            f"{task}: {done}/{total} {unit}" + (f" ({100 * done / total:.0f}%)" if total else "")
            if total
            else f"{task}: {done} {unit}"
        ]
        if math.isfinite(rate):
            parts.append(f"{rate:.2f} {unit}/s" if rate >= 0.1 else f"{1 / rate:.1f} s per {unit.rstrip('s')}")
            if total:
                parts.append(f"{duration((total - done) / rate)} left")
        if info:
            parts.append(info)
        self.console.print(", ".join(parts), highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Nothing to finish: every line is already printed."""


class BarProgress:
    """rich progress bars, one per task, for a terminal."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.progress.start()
        self.tasks: dict[str, int] = {}

    def update(self, task: str, *, done: int, total: int | None, unit: str, info: str = "") -> None:
        """Move the task's bar."""
        if task not in self.tasks:
            self.tasks[task] = self.progress.add_task(task, total=total, info="")
        self.progress.update(self.tasks[task], completed=done, total=total, info=info)

    def close(self) -> None:
        """Stop drawing."""
        self.progress.stop()


def progress_for(console: Console, *, every_s: float = PLAIN_EVERY_S) -> Reporter:
    """Return a bar on a terminal, plain lines every `every_s` seconds otherwise."""
    return BarProgress(console) if console.is_terminal else PlainProgress(console, every_s=every_s)
