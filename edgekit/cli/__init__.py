"""The ``edgekit`` command line: the only place that exits.

User errors print one line on stderr and exit 2; a failed gate or backend
failure exits 1; ``--debug`` (or ``EDGEKIT_DEBUG=1``) shows tracebacks instead.
Ctrl-C prints ``edgekit: interrupted`` and exits 130; SIGTERM or SIGHUP while an
artifact is staged removes the staging folder, prints ``edgekit: terminated`` and
exits 128 + the signal number (143 for SIGTERM). ``edgekit serve`` (a server: edgekit/cli/serve.py,
registered like every command module by ``_register``) treats SIGTERM and Ctrl-C as a request to
stop: it shuts down gracefully and exits 0.
Results go to stdout (``--json`` for machines), progress and errors to stderr.
"""

from __future__ import annotations

import os
import sys

import typer

from edgekit.version import __version__
from edgekit.errors import EdgekitError

app = typer.Typer(
    name="edgekit",
    help="Take small language models to the edge: export (ONNX, GGUF) with a quality gate, run, bench.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
_state = {"debug": bool(os.environ.get("EDGEKIT_DEBUG"))}


def _version(value: bool):
    if value:
        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    if debug:
        _state["debug"] = True


def _register() -> None:
    """Import every command module in this package; each adds its commands to ``app``."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_") and info.name not in ("options", "output", "routing"):  # helpers, no commands
            importlib.import_module(f"{__name__}.{info.name}")


def main(argv: list[str] | None = None) -> int:
    from typer._click.exceptions import NoArgsIsHelpError
    from typer.exceptions import TyperException

    from edgekit.fileio import Terminated

    _register()
    from edgekit.cli.output import log_to_stderr

    log_to_stderr()  # library warnings (unverified file, remote retries, threads) as one line each
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="edgekit", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("edgekit: aborted", err=True)
        return 130
    except NoArgsIsHelpError as exc:
        exc.show()
        return 0
    except TyperException as exc:  # usage errors: bad option values, missing arguments
        if _state["debug"]:
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        message = " ".join(exc.format_message().split())
        typer.echo(f"edgekit: error: {message}{hint}", err=True)
        return exc.exit_code
    except EdgekitError as exc:
        if _state["debug"]:
            raise
        from edgekit.cli.output import error_line

        typer.echo(f"edgekit: error: {error_line(exc)}", err=True)
        for line in getattr(exc, "details", ()):  # e.g. optimize's closest candidates, under the one error line
            typer.echo(f"  {line}", err=True)
        return exc.exit_code
    except Terminated as exc:  # SIGTERM/SIGHUP while an artifact was staged: its cleanup has run
        typer.echo("edgekit: terminated", err=True)
        return exc.code
    except KeyboardInterrupt:
        typer.echo("edgekit: interrupted", err=True)
        return 130
    if code == 130:  # typer turns Ctrl-C (KeyboardInterrupt) in a command into Exit(130) and returns its code
        typer.echo("edgekit: interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0


def entry() -> None:  # console_scripts entry point
    sys.exit(main())
