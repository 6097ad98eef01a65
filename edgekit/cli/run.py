"""``edgekit run``: generate or chat with an artifact, locally or through the router.

Tokens go to stdout as they come; speed, confidence and the routing decision
go to stderr (or, with ``--json``, one JSON object per answer on stdout).
With ``--remote URL --model NAME``, or a remote configured in ``edgekit.toml``
or the environment, requests go through :class:`edgekit.router.Router`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer

from edgekit.cli import app
from edgekit.cli.options import json_option
from edgekit.cli.output import err, print_json
from edgekit.cli.routing import RoutingOptions, router_config, routing_options
from edgekit.errors import ConfigError

if TYPE_CHECKING:
    from edgekit.runtimes.base import GenerationConfig, Model
    from edgekit.runtimes.tier import Tier

ARTIFACT_HELP = "An artifact folder made by 'edgekit export', a bare .gguf or .onnx file, or packaged:smollm2-gguf."


def load_model(spec: str, threads: int | None, context: int | None) -> Model:
    """Load with a spinner on stderr (loading and verifying hashes can take seconds); ``spec`` is what
    ``edgekit.load`` takes: a path or packaged:NAME (resolved by edgekit.artifact.resolve_artifact)."""
    import edgekit
    from edgekit.progress import RichProgress

    with RichProgress(err).step(f"loading {Path(spec).name}"):
        return edgekit.load(spec, threads=threads, context=context)


def generation_config(**settings) -> GenerationConfig:
    from edgekit.runtimes.base import GenerationConfig

    return GenerationConfig(**settings)


def _read_option_file(path: Path, option: str) -> str:
    from edgekit.fileio import not_a_file

    if not path.is_file():
        raise ConfigError(f"{option} {path} {not_a_file(path)}: pass a file", param=option)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{option} {path} cannot be read as UTF-8 text ({exc}): pass a text file",
                          param=option) from exc


def format_option(json_schema: Path | None, regex: str | None, grammar: Path | None) -> dict | None:
    """The response_format of --json-schema FILE, --regex RE or --grammar FILE (at most one)."""
    given = [name for name, v in (("--json-schema", json_schema), ("--regex", regex), ("--grammar", grammar))
             if v is not None]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} both constrain the answer: pass one of them", param=given[1])
    if json_schema is not None:
        from edgekit.fileio import parse_json

        try:
            schema = parse_json(_read_option_file(json_schema, "--json-schema"))
        except ValueError as exc:
            raise ConfigError(f"--json-schema {json_schema} is not valid JSON ({exc}): pass a JSON Schema file",
                              param="--json-schema") from exc
        if isinstance(schema, dict) and schema.get("type") in ("json_schema", "json_object"):
            return schema  # OpenAI's response_format object, as an API request carries it
        if not isinstance(schema, dict):
            raise ConfigError(f"--json-schema {json_schema} holds a JSON {type(schema).__name__}, not a schema "
                              "object: pass a JSON Schema file", param="--json-schema")
        return {"type": "json_schema", "json_schema": {"name": json_schema.stem, "schema": schema}}
    if regex is not None:
        return {"type": "regex", "pattern": regex}
    if grammar is not None:
        return {"type": "lark", "grammar": _read_option_file(grammar, "--grammar")}
    return None


def tools_option(path: Path | None, choice: str) -> dict:
    """tools= and tool_choice= of --tools FILE and --tool-choice (a function's name: that function)."""
    if path is None:
        return {}
    from edgekit.fileio import parse_json

    try:
        tools = parse_json(_read_option_file(path, "--tools"))
    except ValueError as exc:
        raise ConfigError(f"--tools {path} is not valid JSON ({exc}): pass a file with OpenAI's tools list",
                          param="--tools") from exc
    if choice not in ("auto", "required", "none"):
        choice = {"type": "function", "function": {"name": choice}}
    return {"tools": tools, "tool_choice": choice}


def _fmt_timings(t, tier: str) -> str:
    if tier == "remote":
        rate = f" ({t.decode_tokens / t.decode_s:.1f} chunks/s)" if t.decode_s > 0 else ""
        return f"remote: first token {t.ttft_s:.2f} s, {t.decode_tokens + 1} chunks in {t.total_s:.2f} s{rate}"
    return (
        f"prefill {t.prompt_tokens} tokens in {t.prefill_s:.3f} s ({t.prefill_tps:.1f} tok/s) · "
        f"decode {t.decode_tokens} tokens in {t.decode_s:.3f} s ({t.decode_tps:.1f} tok/s) · first token {t.ttft_s:.3f} s"
    )


def _fmt_confidence(c: dict[str, float], k: int | None) -> str:
    head = f"first {c['tokens']}" if k else f"{c['tokens']} tokens"
    return (
        f"confidence ({head}): min {c['min_prob']:.3f} · p10 {c['p10_prob']:.3f} · mean {c['mean_prob']:.3f} · "
        f"mean entropy {c['mean_entropy']:.3f} nats"
    )


def answer(target: Tier, request: tuple[str, Any], cfg: GenerationConfig, *, as_json: bool, first_k: int
           ) -> tuple[str, list[dict] | None]:
    """Stream one answer of any tier to stdout (or collect it for --json), then report; returns the text and the
    tool calls (None: the answer is text). A tool call is printed as ``tool call: name({arguments})``.

    ``request`` is ("chat", messages) or ("generate", prompt). A Router's stream carries its decision.
    """
    from edgekit.runtimes.base import confidence_summary

    kind, payload = request
    events = target.stream_chat(payload, cfg) if kind == "chat" else target.stream(payload, cfg)
    parts, probs, ents, timings, finish, parsed, calls = [], [], [], None, None, None, None
    try:
        for ev in events:
            parts.append(ev.text)
            if not math.isnan(ev.prob):
                probs.append(ev.prob)
                ents.append(ev.entropy)
            if not as_json and ev.text and cfg.tools is None:  # a tool call's text is printed as the call
                sys.stdout.write(ev.text)
                sys.stdout.flush()
            if ev.finish_reason:
                timings, finish, parsed, calls = ev.timings, ev.finish_reason, ev.parsed, ev.tool_calls
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    text = "".join(parts)
    decision = getattr(events, "decision", None)  # a Router's stream says which tier answered
    tier = decision.tier if decision is not None else "remote" if getattr(target, "backend", "") == "remote" else "local"
    conf = confidence_summary(probs, ents) if probs and tier == "local" else None
    head = confidence_summary(probs[:first_k], ents[:first_k]) if conf else None
    if as_json:
        print_json({
            "text": text, "finish_reason": finish, "tier": tier,
            "timings": timings.as_dict() if timings else None, "confidence": conf, f"confidence_first_{first_k}": head,
            "decision": decision.as_dict() if decision is not None else None,
            **({"parsed": _jsonable(parsed)} if cfg.response_format is not None else {}),
            **({"tool_calls": calls} if cfg.tools is not None else {}),
        })
        return text, calls
    if cfg.tools is not None:
        sys.stdout.write("".join(f"tool call: {c['function']['name']}({c['function']['arguments']})\n"
                                 for c in calls) if calls else text)
    sys.stdout.write("\n")
    sys.stdout.flush()
    if timings is not None:
        err.print(_fmt_timings(timings, tier), markup=False)
    if conf:
        err.print(_fmt_confidence(conf, None) + "  |  " + _fmt_confidence(head, first_k), markup=False)
    if decision is not None:
        err.print("decision: " + decision.line(), markup=False)
    return text, calls


@app.command("run")
@routing_options
def run_cmd(
    artifact: str = typer.Argument(..., help=ARTIFACT_HELP, show_default=False),
    prompt: Optional[str] = typer.Option(None, "-p", "--prompt", help="The prompt ('-' reads it from stdin).", show_default=False),
    chat: bool = typer.Option(False, "--chat", help="Interactive chat with the model's chat template: one message per stdin line, until EOF or /exit; the history is kept."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message for --chat (with -p it sends the prompt as a chat message)."),
    raw: bool = typer.Option(False, "--raw", help="Send -p as plain text to continue, without the model's chat template."),
    template: bool = typer.Option(False, "--template", help="Deprecated, does nothing: -p goes through the model's chat template by default (--raw: plain text)."),
    max_tokens: int = typer.Option(128, "--max-tokens", "-n", min=1, help="Most tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 is greedy."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Sample from the k most likely tokens (0: off)."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass in (0, 1]."),
    repeat_penalty: float = typer.Option(1.0, "--repeat-penalty", help="> 1 discourages repeats (1: off)."),
    stop: List[str] = typer.Option([], "--stop", help="Stop when this text appears (repeatable).", show_default=False),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for sampling."),
    json_schema: Optional[Path] = typer.Option(None, "--json-schema", help="Answer as JSON valid under this JSON Schema file (a bare schema, or OpenAI's response_format object).", show_default=False),
    regex: Optional[str] = typer.Option(None, "--regex", help="Answer with text matching this regular expression (whole answer).", show_default=False),
    grammar: Optional[Path] = typer.Option(None, "--grammar", help="Answer within this grammar file: Lark (llguidance's syntax) or llama.cpp's GBNF.", show_default=False),
    tools: Optional[Path] = typer.Option(None, "--tools", help="Functions the model may call: a JSON file with OpenAI's tools list. A call prints as 'tool call: name({...})'; in --chat the next line is its result.", show_default=False),
    tool_choice: str = typer.Option("auto", "--tool-choice", help="With --tools: auto, required, none, or a function's name.", show_default=True),
    routing: RoutingOptions = RoutingOptions(),  # --threads, --context and the router's options (edgekit/cli/routing.py)
    as_json: bool = json_option("Print one JSON object per answer (text, timings, confidence, decision) instead of streaming."),
):
    """Answer a prompt (-p) or chat (--chat), streaming tokens as they come.

    -p goes through the model's chat template as one user message, as ollama and llama-cli do (a model
    without one gets the plain text); --raw sends the plain text for the model to continue.

    --json-schema, --regex and --grammar hold the answer to a format, token by token (llguidance): the
    confidence is then over the tokens the format allowed. With --json the parsed value is printed too.

    Prints prefill/decode tokens per second and a confidence summary on stderr. With a remote
    (--remote URL --model NAME, or configured) the router decides which tier answers and prints
    the decision line: tier, trigger, confidence, latencies.
    """
    if chat == (prompt is not None):
        raise ConfigError("pass either -p PROMPT or --chat (see edgekit run --help)")
    cfg = generation_config(
        max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        repetition_penalty=repeat_penalty, stop=tuple(stop), seed=seed,
        response_format=format_option(json_schema, regex, grammar),
        **tools_option(tools, tool_choice),
    )
    if prompt == "-":
        prompt = sys.stdin.read()
    if prompt is not None and not prompt.strip():
        raise ConfigError("the prompt is empty: pass some text with -p")
    if raw and (chat or system or template or tools):
        used = "--chat" if chat else "--system" if system else "--template" if template else "--tools"
        raise ConfigError(f"--raw sends plain text without the chat template, {used} needs the template: pass one of them")
    router_cfg = router_config(routing)
    remote_llm = router_cfg.make_remote() if router_cfg is not None else None
    model = load_model(artifact, routing.threads, routing.context)
    try:
        target: Tier = router_cfg.make_router(model, remote_llm) if remote_llm is not None else model
        k = router_cfg.policy.first_k if router_cfg is not None else (routing.first_k or 8)
        if chat:
            _chat_loop(target, cfg, system, as_json=as_json, first_k=k)
        elif system or (model.chat_template and not raw):
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
            answer(target, ("chat", msgs), cfg, as_json=as_json, first_k=k)
        else:
            if not raw:
                err.print(f"note: {Path(artifact).name} has no chat template: the prompt goes in as plain text",
                          markup=False)
            answer(target, ("generate", prompt), cfg, as_json=as_json, first_k=k)
    finally:
        if remote_llm is not None:
            remote_llm.close()
        model.close()


def _chat_loop(target: Tier, cfg: GenerationConfig, system: str | None, *, as_json: bool, first_k: int) -> None:
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    pending: list[dict] | None = None  # tool calls of the last answer, waiting for their result
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            err.print("[bold]>[/] ", end="")
        line = sys.stdin.readline()
        if not line:
            break
        line = line.rstrip("\n")
        if line.strip() in ("/exit", "/quit"):
            break
        if not line.strip():
            continue
        if pending:  # the line after a tool call is that call's result
            history.append({"role": "tool", "tool_call_id": pending[0]["id"], "content": line})
        else:
            history.append({"role": "user", "content": line})
        text, calls = answer(target, ("chat", history), cfg, as_json=as_json, first_k=first_k)
        history.append({"role": "assistant", "content": None, "tool_calls": calls} if calls else
                       {"role": "assistant", "content": text})
        pending = calls
        if calls and interactive:
            err.print("type the tool's result (one line)", markup=False)


__all__ = ["run_cmd", "load_model"]


def _jsonable(value):
    """A parsed answer for --json: a pydantic instance as its data, everything else as it is."""
    return value.model_dump() if hasattr(value, "model_dump") else value
