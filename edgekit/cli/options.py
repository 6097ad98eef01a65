"""The options many commands share, declared once each: ``--threads``, ``--context``, ``--json``, ``--force``.

Each function returns the one ``typer.Option`` for its flag: the flag's name, type, default and validation
live here; a command passes only the help line that says what the flag means for it (what the threads run,
what the JSON holds, what --force may replace)::

    threads: Optional[int] = threads_option("onnxruntime threads."),
    as_json: bool = json_option("Print the manifest as JSON."),

The router's options (``edgekit run`` and ``edgekit serve``) are bundled in :mod:`edgekit.cli.routing`,
which takes its ``--threads`` and ``--context`` from here too.
"""

from __future__ import annotations

from typing import Any

import typer

THREADS_HELP = "CPU threads (more than the CPUs warns; over 4x them is refused)."
CONTEXT_HELP = "Context window in tokens."
JSON_HELP = "Print the result as JSON on stdout."
FORCE_HELP = "Replace an existing output."


def threads_option(help: str = THREADS_HELP) -> Any:
    """``--threads N``: an integer >= 1; None (not given) leaves the command's default (runtimes/threads.py
    checks the upper bound against this machine's CPUs)."""
    return typer.Option(None, "--threads", min=1, help=help, show_default=False)


def context_option(help: str = CONTEXT_HELP) -> Any:
    """``--context N``: tokens, an integer >= 2; None (not given) leaves the model's or runtime's default."""
    return typer.Option(None, "--context", min=2, help=help, show_default=False)


def json_option(help: str = JSON_HELP) -> Any:
    """``--json``: a flag that prints JSON on stdout instead of the tables (files go through -o or --report)."""
    return typer.Option(False, "--json", help=help)


def force_option(help: str = FORCE_HELP) -> Any:
    """``--force``: a flag that lets the command replace what is already there (each command says what)."""
    return typer.Option(False, "--force", help=help)


__all__ = ["threads_option", "context_option", "json_option", "force_option"]
