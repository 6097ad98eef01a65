"""``edgekit.toml`` and environment variables: the remote endpoint, the policy, the breaker, the log.

Why a file: the fallback settings belong to a deployment, not to each command
line, and ``edgekit calibrate`` writes the threshold it chose back into it.

    schema_version = 1

    [remote]
    url = "http://127.0.0.1:8080/v1"
    model = "smollm2"
    api_key_env = "EDGEKIT_REMOTE_API_KEY"   # the key itself stays in the environment
    timeout_s = 30.0                          # to the first byte, and between bytes
    deadline_s = 60.0                         # one whole call, retries included

    [policy]                                  # see edgekit.router.policy.Policy
    threshold = 0.3
    first_k = 8
    quantile = 0.1
    ttft_budget_s = 2.0

    [breaker]
    failure_threshold = 3
    cooldown_s = 30.0

    [decision_log]
    path = "decisions.jsonl"                  # relative to this file
    include_prompts = false

Where it is read from: ``--config FILE``, else ``$EDGEKIT_CONFIG``, else
``./edgekit.toml`` when it exists, else the defaults. Environment variables
override the file: ``EDGEKIT_REMOTE_URL``, ``EDGEKIT_REMOTE_MODEL``,
``EDGEKIT_REMOTE_API_KEY_ENV``, ``EDGEKIT_REMOTE_TIMEOUT``, ``EDGEKIT_REMOTE_DEADLINE``, ``EDGEKIT_THRESHOLD``,
``EDGEKIT_DECISION_LOG``; command-line flags override both. The API key is read
from the variable named by ``api_key_env`` (default ``EDGEKIT_REMOTE_API_KEY``);
an ``api_key`` in the file works too but is discouraged.

Writing keeps every setting but not comments (Python has no TOML writer in the
standard library; :mod:`edgekit.tomlio` writes it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr

import edgekit.tomlio as tomlio
from edgekit.errors import ConfigError
from edgekit.fileio import not_a_file, write_text_atomic
from edgekit.router.policy import Policy
from edgekit.strict import StrictModel, load_versioned

CONFIG_NAME = "edgekit.toml"
CONFIG_SCHEMA_VERSION = 1
ENV_OVERRIDES = {
    "EDGEKIT_REMOTE_URL": ("remote", "url"),
    "EDGEKIT_REMOTE_MODEL": ("remote", "model"),
    "EDGEKIT_REMOTE_API_KEY_ENV": ("remote", "api_key_env"),
    "EDGEKIT_REMOTE_TIMEOUT": ("remote", "timeout_s"),
    "EDGEKIT_REMOTE_DEADLINE": ("remote", "deadline_s"),
    "EDGEKIT_THRESHOLD": ("policy", "threshold"),
    "EDGEKIT_DECISION_LOG": ("decision_log", "path"),
}


class RemoteConfig(StrictModel):
    url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1")
    model: str | None = Field(None, description="the model name the server serves")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    api_key: SecretStr | None = Field(None, description="the key itself (prefer api_key_env)")
    # Defaults a person waits through: a dead host fails in 5 s, a silent one in 30 s, and no call
    # takes more than a minute, retries included (RemoteLLM logs each retry as a warning).
    timeout_s: float = Field(30.0, gt=0, description="seconds to wait for the first byte, and between bytes")
    connect_timeout_s: float = Field(5.0, gt=0)
    deadline_s: float = Field(60.0, gt=0, description="the most one call may take in all, retries included")
    max_retries: int = Field(2, ge=0, le=10)
    backoff_s: float = Field(0.5, ge=0)
    max_retry_after_s: float = Field(30.0, ge=0)
    extra_body: dict[str, Any] = Field(default_factory=dict, description="extra JSON fields for the server")


class BreakerConfig(StrictModel):
    failure_threshold: int = Field(3, ge=1)
    cooldown_s: float = Field(30.0, ge=0)


class LogConfig(StrictModel):
    path: str | None = None
    include_prompts: bool = False


class EdgekitConfig(StrictModel):
    schema_version: int = CONFIG_SCHEMA_VERSION
    remote: RemoteConfig = Field(default_factory=RemoteConfig)
    policy: Policy = Field(default_factory=Policy)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    decision_log: LogConfig = Field(default_factory=LogConfig)

    # where it came from (not part of the file)
    source: Path | None = Field(None, exclude=True)

    @property
    def has_remote(self) -> bool:
        return bool(self.remote.url)

    def make_remote(self):
        """A :class:`RemoteLLM` for ``[remote]``, or None when no URL is configured."""
        from edgekit.router.remote import RemoteLLM

        r = self.remote
        if not r.url:
            return None
        if not r.model:
            raise ConfigError(
                f"a remote URL is configured ({r.url}) but no model: set [remote] model or pass model=NAME", param="model"
            )
        return RemoteLLM(
            r.url, r.model, api_key=r.api_key.get_secret_value() if r.api_key else None, api_key_env=r.api_key_env,
            timeout=r.timeout_s, connect_timeout=r.connect_timeout_s, deadline_s=r.deadline_s,
            max_retries=r.max_retries, backoff_s=r.backoff_s,
            max_retry_after_s=r.max_retry_after_s, extra_body=r.extra_body,
        )

    def make_router(self, local, remote=None):
        """A :class:`Router` over ``local`` with this config's remote (unless one is given), policy, breaker and log."""
        from edgekit.router.breaker import CircuitBreaker
        from edgekit.router.log import DecisionLog
        from edgekit.router.router import Router

        log = None
        if self.decision_log.path:
            log = DecisionLog(self.log_path(), include_prompts=self.decision_log.include_prompts)
        breaker = CircuitBreaker(self.breaker.failure_threshold, self.breaker.cooldown_s)
        return Router(local, remote if remote is not None else self.make_remote(), self.policy, breaker=breaker, decision_log=log)

    def log_path(self) -> Path | None:
        if not self.decision_log.path:
            return None
        p = Path(self.decision_log.path).expanduser()
        if not p.is_absolute() and self.source is not None:
            p = self.source.parent / p
        return p


def find_config(path: str | os.PathLike | None = None) -> Path | None:
    """The config file to read: ``path``, else $EDGEKIT_CONFIG, else ./edgekit.toml if present."""
    if path is not None or os.environ.get("EDGEKIT_CONFIG"):
        p = Path(path if path is not None else os.environ["EDGEKIT_CONFIG"]).expanduser()
        if not p.is_file():
            where = "" if path is not None else " ($EDGEKIT_CONFIG)"
            raise ConfigError(f"the config file {p}{where} {not_a_file(p)}: pass an edgekit.toml file")
        return p
    p = Path(CONFIG_NAME)
    return p if p.is_file() else None


def read_raw(path: Path) -> dict[str, Any]:
    return tomlio.load_file(path)


def _validate(raw: dict[str, Any], where: str) -> EdgekitConfig:
    try:
        return load_versioned(EdgekitConfig, raw, where=where, error=ConfigError)
    except ConfigError as exc:  # Policy validates itself (its __init__ translates pydantic's error)
        if not str(exc).startswith("invalid policy"):
            raise
        detail = str(exc).removeprefix("invalid policy: ")
        raise ConfigError(f"{where}: " + (detail.replace("field '", "field 'policy.", 1) if "field '" in detail
                                           else f"policy: {detail}")) from exc


def apply_env(raw: dict[str, Any], environ=None) -> dict[str, Any]:
    """``raw`` with the EDGEKIT_* environment overrides applied (a copy)."""
    environ = os.environ if environ is None else environ
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for var, (section, key) in ENV_OVERRIDES.items():
        value = environ.get(var)
        if value is None or value == "":
            continue
        if key in ("timeout_s", "deadline_s", "threshold"):
            try:
                value = float(value)
            except ValueError as exc:
                raise ConfigError(f"${var} must be a number, got {value!r}") from exc
        out.setdefault(section, {})[key] = value
    return out


def load_config(path: str | os.PathLike | None = None, *, env: bool = True, **overrides: dict[str, Any]) -> EdgekitConfig:
    """Read the config (see the module docstring for where from), apply env vars, then ``overrides``.

    ``overrides`` are sections of settings, e.g. ``remote={"url": ..., "model": ...}``; None values are ignored.
    """
    source = find_config(path)
    raw = read_raw(source) if source is not None else {}
    if env:
        raw = apply_env(raw)
    for section, values in overrides.items():
        values = {k: v for k, v in (values or {}).items() if v is not None}
        if values:
            raw.setdefault(section, {})
            raw[section] = {**raw[section], **values}
    where = str(source) if source is not None else "the configuration"
    cfg = _validate(raw, where)
    cfg.source = source.absolute() if source is not None else None
    return cfg


def update_config(path: str | os.PathLike, section: str, values: dict[str, Any]) -> Path:
    """Set ``values`` in ``[section]`` of the TOML file at ``path`` (created if missing), validated, written atomically."""
    path = Path(path).expanduser()
    raw = read_raw(path) if path.is_file() else {"schema_version": CONFIG_SCHEMA_VERSION}
    raw.setdefault(section, {})
    if not isinstance(raw[section], dict):
        raise ConfigError(f"{path}: '{section}' must be a table")
    raw[section].update(values)
    _validate(raw, str(path))
    text = tomlio.dumps(raw)
    if path.parent and not path.parent.exists():
        raise ConfigError(f"cannot write {path}: the folder {path.parent} does not exist")
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
