"""Progress reporting for long work: silent for library callers, Rich bars on the CLI.

Library functions take ``progress: Progress | None``; the CLI passes a
:class:`RichProgress` that draws bars on stderr.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


class Step:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, description: str) -> None:
        pass


class Progress:
    """No-op progress: what library callers get unless they pass their own."""

    @contextlib.contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Step]:
        yield Step()

    def log(self, message: str) -> None:
        pass


class _RichStep(Step):
    def __init__(self, bar, task_id):
        self._bar, self._id = bar, task_id

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._id, n)

    def update(self, description: str) -> None:
        self._bar.update(self._id, description=description)


class RichProgress(Progress):
    """Bars on stderr: one per step, a spinner with elapsed time when the total is unknown."""

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True)

    @contextlib.contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Step]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        with Bar(*columns, console=self.console, transient=False) as bar:
            task_id = bar.add_task(description, total=total)
            yield _RichStep(bar, task_id)
            if total:
                bar.update(task_id, completed=total)

    def log(self, message: str) -> None:
        self.console.print(message)


def ensure(progress: Progress | None) -> Progress:
    return progress if progress is not None else Progress()
