"""Progress of long commands: a rich bar on a terminal, a plain line every so often without one.

Under nohup, Slurm or `ray job submit` there is no terminal: rich draws no
bar there, so a run would print nothing for hours. `progress()` then gives a
`PlainProgress` with the same calls (`add_task`, `update`) that prints one
line every `S2V_PROGRESS_SECONDS` (30 by default) and one at the end: what is
done, the rate, the time left.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress(console: Console, *, unit: str = "items"):
    """Returns a progress display for `console`: rich's bar on a terminal, plain lines otherwise."""
    if console.is_terminal:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console, transient=False)
    return PlainProgress(console, unit=unit)


@dataclass
class _Task:
    description: str
    total: float | None
    info: str = ""
    completed: float = 0.0
    started: float = field(default_factory=time.monotonic)


class PlainProgress:
    """Plain progress lines, for runs without a terminal; the calls of rich's Progress that s2v uses."""

    def __init__(self, console: Console, *, unit: str = "items", every_s: float | None = None):
        self.console, self.unit = console, unit
        self.every_s = float(os.environ.get("S2V_PROGRESS_SECONDS", 30)) if every_s is None else every_s
        self.tasks: dict[int, _Task] = {}
        self._last = time.monotonic()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        for task_id in self.tasks:
            self._print(task_id)

    def add_task(self, description: str, *, total: float | None = None, info: str = "", **_) -> int:
        task_id = len(self.tasks)
        self.tasks[task_id] = _Task(description, total, info)
        return task_id

    def update(self, task_id: int, *, advance: float | None = None, completed: float | None = None,
               total: float | None = None, info: str | None = None, **_) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance:
            task.completed += advance
        if info is not None:
            task.info = info
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._print(task_id)

    def line(self, task_id: int) -> str:
        """Returns the progress line of a task: done, rate, time left."""
        task = self.tasks[task_id]
        elapsed = max(time.monotonic() - task.started, 1e-9)
        rate = task.completed / elapsed
        done = f"{task.completed:g}" + (f"/{task.total:g}" if task.total else "") + f" {self.unit}"
        if task.total:
            done += f" ({100 * task.completed / task.total:.0f}%)"
        left = ""
        if task.total and rate > 0 and task.completed < task.total:
            left = f", {_clock((task.total - task.completed) / rate)} left"
        extra = f", {task.info}" if task.info else ""
        return f"{task.description}: {done}, {rate:.3g} {self.unit}/s, {_clock(elapsed)} elapsed{left}{extra}"

    def _print(self, task_id: int) -> None:
        self.console.print(self.line(task_id), soft_wrap=True, markup=False, highlight=False)
        sys.stderr.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"
