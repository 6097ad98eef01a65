"""What a server is told: its limits, its API keys, where it listens. No web framework imported here.

:class:`ServeSettings` holds the settings :func:`edgekit.serve.create_app` takes as keywords.
:func:`load_api_keys` gathers the keys a client must send (``Authorization: Bearer KEY``)
from the arguments, ``$EDGEKIT_API_KEYS`` (several, separated by commas or spaces) and
key files (one key per line, ``#`` comments; ``$EDGEKIT_API_KEYS_FILE`` names one).
Keys are secrets: they are never printed, logged or put in an error message.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable, Mapping

from edgekit.errors import ConfigError, is_int

KEYS_ENV = "EDGEKIT_API_KEYS"
KEYS_FILE_ENV = "EDGEKIT_API_KEYS_FILE"
_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: what an HTTP header carries


@dataclass(frozen=True)
class ServeSettings:
    """How the server behaves; every field is a keyword of :func:`~edgekit.serve.create_app`.

    ``model_name``: the id in ``/v1/models`` and in answers (default: the artifact's name);
    ``embed_name``: the same for the embedding model; ``api_keys``: keys a client must send
    (empty: no check); ``max_queue``: requests that may wait for a busy lane (local model,
    remote, embedder) before the next gets 503 with Retry-After; ``remote_concurrency``:
    requests answered by the remote at once, beside the local ones; ``max_body_bytes``: the
    largest request body; ``max_tokens``: the default ``max_tokens`` of a chat request that
    sets none (completions default to 16, as OpenAI's); ``shutdown_timeout_s``: on shutdown,
    how long requests in flight may finish before they are cancelled; ``retry_after_s``: the
    Retry-After of a 503 (None: estimated from recent request times).
    """

    model_name: str | None = None
    embed_name: str | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    max_queue: int = 16
    remote_concurrency: int = 16
    max_body_bytes: int = 1 << 20
    max_tokens: int = 256
    shutdown_timeout_s: float = 10.0
    retry_after_s: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "api_keys", check_keys(self.api_keys))
        ints = {"max_queue": 0, "remote_concurrency": 1, "max_body_bytes": 1024, "max_tokens": 1}
        for name, low in ints.items():
            value = getattr(self, name)
            if not is_int(value, low):
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}", param=name)
        t = self.shutdown_timeout_s
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
            raise ConfigError(f"shutdown_timeout_s must be a number of seconds >= 0, got {t!r}", param="shutdown_timeout_s")
        r = self.retry_after_s
        if r is not None and not is_int(r, 1):
            raise ConfigError(f"retry_after_s must be an integer >= 1 (or None), got {r!r}", param="retry_after_s")
        for name in ("model_name", "embed_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name} must be a non-empty string, got {value!r}", param=name)

    @classmethod
    def from_kwargs(cls, options: Mapping[str, object]) -> "ServeSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown server setting(s) {', '.join(unknown)}: use {', '.join(sorted(known))}")
        return cls(**options)  # type: ignore[arg-type]


def check_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """The keys, validated and deduplicated (the error never quotes a key)."""
    if isinstance(keys, str):
        keys = (keys,)
    out: list[str] = []
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not _KEY_CHARS.match(key):
            raise ConfigError(
                f"API key number {i + 1} is empty or has spaces or non-ASCII characters: use printable ASCII", param="api_keys"
            )
        if key not in out:
            out.append(key)
    return tuple(out)


def read_key_file(path: str | os.PathLike) -> list[str]:
    """One key per line; blank lines and ``#`` comments are skipped."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the API key file {p}: {getattr(exc, 'strerror', None) or exc}", param="api_key_files") from exc
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not keys:
        raise ConfigError(f"the API key file {p} holds no key: put one key per line", param="api_key_files")
    return keys


def load_api_keys(keys: Iterable[str] = (), files: Iterable[str | os.PathLike] = (), environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``keys``, then those of ``$EDGEKIT_API_KEYS``, then those of each file (``files``, ``$EDGEKIT_API_KEYS_FILE``)."""
    env = os.environ if environ is None else environ
    out = list(keys)
    out += [k for k in re.split(r"[,\s]+", env.get(KEYS_ENV, "")) if k]
    paths = list(files) + ([env[KEYS_FILE_ENV]] if env.get(KEYS_FILE_ENV) else [])
    for path in paths:
        out += read_key_file(path)
    return check_keys(out)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: may resolve to anything


__all__ = ["ServeSettings", "load_api_keys", "read_key_file", "check_keys", "is_loopback", "KEYS_ENV", "KEYS_FILE_ENV"]
