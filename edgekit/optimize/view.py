"""What an optimize run shows while it works: the candidates and the step each is in.

:class:`CandidateView` is what the run talks to. The library default sends one line per
change through an ordinary :class:`~edgekit.progress.Progress` (silent unless the caller
passes one) and hands each candidate's exporter and bench a progress whose steps carry
the candidate's label. :class:`BoardView` (the CLI's) draws the candidates as one live
table on a terminal, the exporters' and the bench's steps (with their counts) in the
candidate's row and gate verdicts printed above it; elsewhere (a pipe, CI) it prints one
plain line per change, as :class:`~edgekit.progress.RichProgress` does.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from edgekit.optimize.schema import CandidateRecord
from edgekit.progress import Progress, Step, ensure


class _Prefixed(Progress):
    """A candidate's sub-progress: the parent's steps and lines, prefixed with the candidate's label."""

    def __init__(self, parent: Progress, label: str):
        self.parent, self.label = parent, label

    @contextlib.contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Step]:
        with self.parent.step(f"{self.label}: {description}", total) as inner:
            yield _PrefixedStep(inner, self.label)

    def log(self, message: str) -> None:
        self.parent.log(f"{self.label}: {message}")


class _PrefixedStep(Step):
    def __init__(self, inner: Step, label: str):
        self.inner, self.label = inner, label

    def advance(self, n: int = 1) -> None:
        self.inner.advance(n)

    def update(self, description: str) -> None:
        self.inner.update(f"{self.label}: {description}")


class CandidateView(Progress):
    """One line per candidate change through ``progress``; sub-steps prefixed with the candidate's label."""

    def __init__(self, progress: Progress | None = None):
        self.progress = ensure(progress)

    def plan(self, cands: list[CandidateRecord]) -> None:
        """The candidates are known (called once, before any work)."""

    def update(self, c: CandidateRecord, text: str) -> None:
        self.progress.log(f"{c.label}: {text}")

    def sub(self, c: CandidateRecord) -> Progress:
        return _Prefixed(self.progress, c.label)

    def step(self, description: str, total: int | None = None):
        return self.progress.step(description, total)

    def log(self, message: str) -> None:
        self.progress.log(message)

    def close(self) -> None:
        """The run is over (finished, failed or interrupted)."""


def status_text(c: CandidateRecord) -> str:
    if c.status in ("pruned", "rejected", "failed"):
        return f"{c.status}: {c.reason}"
    return c.status


class _RowStep(Step):
    def __init__(self, board: "BoardView", label: str, description: str, total: int | None):
        self.board, self.label, self.description, self.total, self.done = board, label, description, total, 0
        self._show()

    def _show(self) -> None:
        count = f" {self.done}/{self.total}" if self.total else ""
        self.board.set_step(self.label, f"{self.description}{count}")

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._show()

    def update(self, description: str) -> None:
        self.description = description
        self._show()


class _RowProgress(Progress):
    def __init__(self, board: "BoardView", label: str):
        self.board, self.label = board, label

    @contextlib.contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Step]:
        yield _RowStep(self.board, self.label, description, total)

    def log(self, message: str) -> None:
        self.board.log(f"{self.label}: {message}")


class BoardView(CandidateView):
    """The CLI's view: a live table of the candidates on a terminal, plain lines elsewhere."""

    def __init__(self, console=None):
        from edgekit.progress import RichProgress

        self.plain = RichProgress(console)
        super().__init__(self.plain)
        self.console = self.plain.console
        self.live = None
        self.rows: dict[str, list[str]] = {}  # label -> [status, step, elapsed start]
        self.started: dict[str, float] = {}

    def plan(self, cands: list[CandidateRecord]) -> None:
        self.rows = {c.label: [status_text(c), ""] for c in cands}
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def _table(self):
        from rich.table import Table
        from rich.text import Text

        table = Table(title="edgekit optimize: candidates", title_justify="left", expand=False)
        for col in ("candidate", "status", "step", "s"):
            table.add_column(col, justify="right" if col == "s" else "left", overflow="fold")
        now = time.perf_counter()
        for label, (status, step) in self.rows.items():
            t0 = self.started.get(label)
            busy = t0 is not None and step
            table.add_row(Text(label), Text(status[:90]), Text(step[:70]), f"{now - t0:.0f}" if busy else "")
        return table

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._table())

    def set_step(self, label: str, text: str) -> None:
        self.rows.setdefault(label, ["", ""])[1] = text
        self._refresh()

    def update(self, c: CandidateRecord, text: str) -> None:
        if self.live is None:
            self.plain.log(f"{c.label}: {text}")
            return
        done = c.status not in ("planned",)
        self.rows[c.label] = [status_text(c) if done else "working", "" if done else text]
        if not done:
            self.started.setdefault(c.label, time.perf_counter())
        self._refresh()

    def sub(self, c: CandidateRecord) -> Progress:
        return _RowProgress(self, c.label) if self.live is not None else _Prefixed(self.plain, c.label)

    def log(self, message: str) -> None:
        if self.live is not None:
            self.live.console.print(message, markup=False, highlight=False, soft_wrap=True)
        else:
            self.plain.log(message)

    def close(self) -> None:
        if self.live is not None:
            self._refresh()
            self.live.stop()
            self.live = None
