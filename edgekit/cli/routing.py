"""The options ``edgekit run`` and ``edgekit serve`` share, declared once: the local model's threads and
context, and the fallback router's settings (the remote tier, edgekit.toml, the policy, the decision log).

A command takes one parameter ``routing: RoutingOptions`` and is decorated with :func:`routing_options`
(below ``@app.command``): the options take that parameter's place in the command's signature, so they
appear there in ``--help``, and the command receives them as one :class:`RoutingOptions`.
:func:`router_config` turns them into the router's configuration (policy, remote, breaker, log), or None
for a plain local run.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

from edgekit.cli.options import context_option, threads_option
from edgekit.errors import ConfigError
from edgekit.fileio import check_output_file

if TYPE_CHECKING:
    from edgekit.router.config import EdgekitConfig


@dataclass(frozen=True)
class RoutingOptions:
    """The parsed shared options (None: not given, the config's or the default applies)."""

    threads: int | None = None
    context: int | None = None
    remote: str | None = None
    model_name: str | None = None
    api_key_env: str | None = None
    config: Path | None = None
    local_only: bool = False
    threshold: float | None = None
    first_k: int | None = None
    ttft_budget: float | None = None
    total_budget: float | None = None
    decision_log: Path | None = None


# field -> (type, option), in the order --help lists them
_OPTIONS: dict[str, tuple[Any, Any]] = {
    "threads": (Optional[int], threads_option(
        "CPU threads per local model (more than the CPUs warns; over 4x them is refused).")),
    "context": (Optional[int], context_option("Local context window in tokens.")),
    "remote": (Optional[str], typer.Option(
        None, "--remote", help="OpenAI-compatible base URL of the remote tier (e.g. http://127.0.0.1:8089/v1): "
        "route through the fallback router.", show_default=False)),
    "model_name": (Optional[str], typer.Option(None, "--model", help="The remote's model name.", show_default=False)),
    "api_key_env": (Optional[str], typer.Option(
        None, "--api-key-env", help="Environment variable holding the remote tier's API key "
        "(default EDGEKIT_REMOTE_API_KEY).", show_default=False)),
    "config": (Optional[Path], typer.Option(
        None, "--config", help="edgekit.toml to read (default: $EDGEKIT_CONFIG, else ./edgekit.toml if present).",
        show_default=False)),
    "local_only": (bool, typer.Option(
        False, "--local-only", help="Ignore a remote configured in edgekit.toml or the environment.")),
    "threshold": (Optional[float], typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="Low-confidence threshold (default: $EDGEKIT_THRESHOLD, else the "
        "config's, as edgekit calibrate wrote it, else 0.45).", show_default=False)),  # router.policy.DEFAULT_THRESHOLD
    "first_k": (Optional[int], typer.Option(
        None, "--first-k", min=1, help="Tokens the confidence is measured over.", show_default=False)),
    "ttft_budget": (Optional[float], typer.Option(
        None, "--ttft-budget", min=0.0, help="Seconds: a slower local first token goes remote.", show_default=False)),
    # The router checks it while the local draft is held back (the first --first-k tokens, before the confidence
    # check: router/router.py _pull); after that the local answer streams to the end (the module docstring, step 4).
    "total_budget": (Optional[float], typer.Option(
        None, "--total-budget", min=0.0, help="Seconds for the whole answer: a local draft (the first --first-k "
        "tokens, held back for the confidence check) unfinished by then goes remote, which must be done by then too "
        "(given at least 30 s, policy remote_min_s); once local tokens are out, the local answer is final.",
        show_default=False)),
    "decision_log": (Optional[Path], typer.Option(
        None, "--decision-log", help="Append one JSON line per routed request to this file.", show_default=False)),
}


def routing_options(command: Callable) -> Callable:
    """Replace ``command``'s ``routing`` parameter by the shared options; the command gets a :class:`RoutingOptions`."""
    sig = inspect.signature(command, eval_str=True)
    if "routing" not in sig.parameters:
        raise TypeError(f"{command.__name__} needs a 'routing: RoutingOptions' parameter where the options go")
    params: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        if p.name == "routing":
            params += [inspect.Parameter(name, p.kind, default=option, annotation=kind)
                       for name, (kind, option) in _OPTIONS.items()]
        elif p.name in _OPTIONS:
            raise TypeError(f"{command.__name__}: parameter {p.name!r} is one of the shared routing options")
        else:
            params.append(p)

    @functools.wraps(command)
    def with_routing(**kwargs: Any) -> Any:
        routing = RoutingOptions(**{name: kwargs.pop(name) for name in _OPTIONS})
        return command(routing=routing, **kwargs)

    with_routing.__signature__ = sig.replace(parameters=params)  # what typer reads (inspect stops here)
    with_routing.__annotations__ = {p.name: p.annotation for p in params if p.annotation is not p.empty}
    return with_routing


def router_config(opts: RoutingOptions) -> EdgekitConfig | None:
    """The router's configuration, or None when no remote is configured (plain local run).

    Reads edgekit.toml and the environment, the options overriding both; refuses routing options given
    without a remote, and checks the decision log is writable before any model loads.
    """
    from edgekit.router.config import load_config

    if opts.local_only and opts.remote:
        raise ConfigError("--local-only and --remote contradict each other: pass one")
    if opts.model_name and not opts.remote and opts.local_only:
        raise ConfigError("--model names the remote's model: it needs --remote URL (or a configured remote)")
    policy: dict[str, Any] = {"threshold": opts.threshold, "first_k": opts.first_k,
                              "ttft_budget_s": opts.ttft_budget, "total_budget_s": opts.total_budget}
    log = opts.decision_log
    cfg = load_config(
        opts.config, remote={"url": opts.remote, "model": opts.model_name, "api_key_env": opts.api_key_env},
        policy=policy, decision_log={"path": str(log.absolute()) if log else None},  # relative to the cwd
    )
    if opts.local_only or not cfg.has_remote:
        routing = {"--model": opts.model_name, "--api-key-env": opts.api_key_env, "--threshold": opts.threshold,
                   "--ttft-budget": opts.ttft_budget, "--total-budget": opts.total_budget, "--decision-log": log}
        given = [flag for flag, value in routing.items() if value is not None]
        if given:
            raise ConfigError(
                f"{', '.join(given)} only apply when routing: pass --remote URL too (or configure a remote)")
        return None
    if cfg.log_path() is not None:  # before any model loads: the log is appended to after each answer
        check_output_file(cfg.log_path(), "decision_log", append=True, make_folders=True)
    return cfg


__all__ = ["RoutingOptions", "routing_options", "router_config"]
