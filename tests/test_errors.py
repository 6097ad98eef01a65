"""Library errors name Python parameters; only the CLI words them as flags."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from edgekit.cli.output import FLAGS, error_line
from edgekit.errors import ConfigError, ContextOverflowError, EdgekitError, ExportError, MissingDependencyError
from edgekit.quality import parse_threshold_overrides

PKG = Path(__file__).resolve().parents[1] / "edgekit"
FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*|-[a-z]/--[a-z][\w-]*)")


def _raised_strings(tree: ast.AST):
    """Every string literal (f-string parts too) inside a ``raise`` statement, with its line."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for sub in ast.walk(node.exc):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    yield sub.lineno, sub.value


def test_library_error_messages_name_no_flags():
    offenders = []
    for path in PKG.rglob("*.py"):
        if "cli" in path.relative_to(PKG).parts:
            continue
        for line, text in _raised_strings(ast.parse(path.read_text(), str(path))):
            text = re.sub(r"pip install [^:;)]*", "", text)  # pip's own flags are not edgekit's
            if FLAG.search(text):
                offenders.append(f"{path.relative_to(PKG.parent)}:{line}: {text!r}")
    assert not offenders, "library errors must name parameters (name=), not flags:\n" + "\n".join(offenders)


def test_errors_carry_the_parameters_they_name():
    with pytest.raises(ConfigError, match=r"^bad threshold='bogus=1': use METRIC=VALUE") as info:
        parse_threshold_overrides(["bogus=1"])
    assert info.value.params == ("threshold",)
    assert ConfigError("x", param=("a", "b")).params == ("a", "b")
    assert EdgekitError("x").params == ()
    # the subclasses with their own constructors still have (empty) params
    assert ContextOverflowError("too long", prompt_tokens=9, context=8).params == ()
    assert MissingDependencyError("thing", "gguf").params == ()


@pytest.mark.parametrize("error, line", [
    (ConfigError("bad threshold='kl_mean=abc': not a number", param="threshold"),
     "bad --threshold 'kl_mean=abc': not a number"),
    (ConfigError("/x already exists: choose another out= or pass force=True to replace it",
                 param=("out", "force")),
     "/x already exists: choose another -o/--output or pass --force to replace it"),
    (ExportError("the rewrite failed: export with optimize=False", param="optimize"),
     "the rewrite failed: export with --no-optimize"),
    (ConfigError("params needs quant= (a GGUF type)", param=("params", "quant")),
     "--params needs --quant (a GGUF type)"),
    (ConfigError("params='lots' is not a parameter count", param="params"),
     "--params 'lots' is not a parameter count"),
    (ConfigError("context must be an integer >= 2, got 1", param="context"),
     "--context must be an integer >= 2, got 1"),
    (ConfigError("kv_heads must be an integer >= 1, got 0", param="kv_heads"),
     "--kv-heads must be an integer >= 1, got 0"),
    (ConfigError("pass e.g. base_url=http://127.0.0.1:8080/v1", param="base_url"),
     "pass e.g. --remote http://127.0.0.1:8080/v1"),
    (ConfigError("pass task=, one of a, b", param="task"), "pass --task, one of a, b"),
    # only the parameters the error declares, only as whole words, only the first line
    (ConfigError("context must be an integer >= 2, got 1"), "context must be an integer >= 2, got 1"),
    (ConfigError("n_context=3 and context=4 differ", param="context"), "n_context=3 and --context 4 differ"),
    (ConfigError("the model's context is full; pass quant=q8_0", param="context"),
     "the model's context is full; pass quant=q8_0"),
    (ConfigError("first line quant=f16\nsecond line", param="quant"), "first line --quant f16"),
    (ConfigError("unknown=1 is not known", param="unknown"), "unknown=1 is not known"),
    (ConfigError(""), "ConfigError"),
])
def test_cli_words_parameters_as_flags(error, line):
    assert error_line(error) == line


def test_every_flag_is_a_cli_option():
    import typer

    from edgekit.cli import _register, app

    _register()
    options: set[str] = set()

    def walk(command):
        for param in command.params:
            options.update(param.opts)
            options.update(param.secondary_opts)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    for name, flag in FLAGS.items():
        for opt in flag.split("/"):
            negated = "--no-" + opt.removeprefix("--")
            assert opt in options or negated in options, f"FLAGS[{name!r}] = {flag!r}: no such option"


def test_a_damaged_model_is_blamed_on_the_file_and_still_falls_back():
    """NaN logits while generating are an ArtifactError (as at load); the router's default policy falls back
    from it, and a server answers 500 (its own model is damaged), not 400 (the request is fine)."""
    from edgekit.errors import ArtifactError
    from edgekit.router.policy import Policy
    from edgekit.serve.protocol import error_for

    damaged = ArtifactError("m.gguf is corrupt: its llama.cpp output after the prompt is not a number")
    assert Policy().falls_back_on(damaged) and not Policy(fallback_errors=("BackendError",)).falls_back_on(damaged)
    api = error_for(damaged)
    assert api.status == 500 and api.code == "model_damaged"
    assert error_for(ArtifactError("x", param="model")).status == 500
