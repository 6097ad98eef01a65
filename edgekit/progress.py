"""Progress reporting for long work: silent for library callers, Rich bars on the CLI.

Library functions take ``progress: Progress | None``; the CLI passes a
:class:`RichProgress` that draws bars on stderr when it is a terminal. When
stderr is a file or a pipe (a script, CI) there are no spinners: each step that
finishes prints one plain line, and a step that fails prints nothing, so the
error is the first line about it that a script reads.
"""

from __future__ import annotations

import contextlib
import time
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
        """A one-line note the user should see (a gate verdict, stale staging folders removed)."""


class _RichStep(Step):
    def __init__(self, bar, task_id):
        self._bar, self._id = bar, task_id

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._id, n)

    def update(self, description: str) -> None:
        self._bar.update(self._id, description=description)


class _PlainStep(Step):
    def __init__(self, description: str, total: int | None):
        self.description, self.total = description, total

    def update(self, description: str) -> None:
        self.description = description


class RichProgress(Progress):
    """Bars on stderr: one per step, a spinner with elapsed time when the total is unknown.

    Only on a terminal: elsewhere each finished step is one plain line (``convert: tokenizer: done
    (0.3 s)``) and a failed step prints nothing.
    """

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True)

    @contextlib.contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Step]:
        if not self.console.is_terminal:
            plain, t0 = _PlainStep(description, total), time.perf_counter()
            yield plain
            count = f"{plain.total}/{plain.total}, " if plain.total else ""
            self.log(f"{plain.description}: done ({count}{time.perf_counter() - t0:.1f} s)")
            return
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
        """One plain-text line (paths and names are not read as Rich markup)."""
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)


def ensure(progress: Progress | None) -> Progress:
    return progress if progress is not None else Progress()
