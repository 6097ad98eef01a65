"""TOML for edgekit's own files (edgekit.toml, target profiles): read with tomllib, write our small subset.

The writer covers what those files hold: top-level scalars, arrays and inline tables,
one level of ``[tables]`` and ``[[arrays of tables]]``. Strings are written as JSON
strings without ASCII escaping (JSON's ``\\uD83E``-style surrogate pairs are not valid
TOML), and every written text is parsed back before it is returned.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from edgekit.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def loads(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer of more digits than Python converts
        raise ConfigError(f"{where} is not valid TOML: {exc}") from exc
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError(f"{where} is not valid TOML: arrays or tables nested too deeply") from None


def load_file(path: str | os.PathLike) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    return loads(text, str(path))


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return repr(v) if not math.isinf(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items() if x is not None) + " }"
    raise ConfigError(f"cannot write {type(v).__name__} values to TOML")


def key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "_-" for c in k) else json.dumps(k, ensure_ascii=False)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dumps(data: dict[str, Any]) -> str:
    """TOML text of ``data``: scalars first, then ``[tables]``, then ``[[arrays of tables]]``; parsed back to check."""
    lines = [f"{key(k)} = {value(v)}" for k, v in data.items()
             if v is not None and not isinstance(v, dict) and not _is_table_array(v)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{key(k)}]"] + [f"{key(sk)} = {value(sv)}" for sk, sv in v.items() if sv is not None]
    for k, v in data.items():
        if _is_table_array(v):
            for row in v:
                lines += ["", f"[[{key(k)}]]"] + [f"{key(sk)} = {value(sv)}" for sk, sv in row.items() if sv is not None]
    text = "\n".join(lines).lstrip("\n") + "\n"
    loads(text, "edgekit's own TOML output")  # never hand out text that would not read back
    return text
