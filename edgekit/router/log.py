"""The decision log: one JSON line per routed request, for calibration and audits later.

Why a file of its own: thresholds drift with prompts and models, and the only
honest way to re-tune them is to look at what the router saw. Each line has the
tier, trigger, reason, the draft's first-token probabilities and confidence
summary, latencies and errors. Prompt and answer text are written only with
``include_prompts=True``: by default the log holds no user text. API keys never
reach it (errors are logged by their messages, which the remote client scrubs).

Lines are appended with one ``write`` call each under a lock, so several
routers in one process (or several processes on a local file system, where
appends of a line are atomic) can share a file.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import ConfigError

if TYPE_CHECKING:
    from edgekit.router.decision import RoutedRequest
    from edgekit.router.policy import Policy

logger = logging.getLogger("edgekit.router")

LOG_SCHEMA_VERSION = 1


class DecisionLog:
    """Appends decision records to a JSON Lines file (created with its folder if missing)."""

    def __init__(self, path: str | os.PathLike, *, include_prompts: bool = False):
        self.path = Path(path).expanduser()
        self.include_prompts = bool(include_prompts)
        self._lock = threading.Lock()
        self._warned = False
        if self.path.is_dir():
            raise ConfigError(f"the decision log {self.path} is a folder: pass a file path such as decisions.jsonl")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot write the decision log {self.path}: {exc.strerror or exc}") from exc

    def write(self, record: dict[str, Any]) -> None:
        """Append one line. A failing write (disk full, folder removed) warns once and never costs the answer."""
        line = json.dumps(record, ensure_ascii=False, default=_jsonable, allow_nan=False) + "\n"
        with self._lock:
            try:
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError as exc:
                if not self._warned:
                    self._warned = True
                    logger.warning("cannot append to the decision log %s: %s", self.path, exc.strerror or exc)

    def __repr__(self) -> str:
        return f"<DecisionLog {self.path}{' with prompts' if self.include_prompts else ''}>"


def _jsonable(value: Any) -> Any:
    return str(value)


def _clean(value: Any) -> Any:
    """NaN/inf -> None so every line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def decision_record(run: RoutedRequest, policy: Policy, include_prompts: bool = False) -> dict[str, Any]:
    """The log line of a finished (or failed) request."""
    d = run.decision
    record: dict[str, Any] = {
        "schema_version": LOG_SCHEMA_VERSION,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
        "api": run.api,
        "stream": run.stream,
        **d.as_dict(),
        "first_k": policy.first_k,
        "quantile": policy.quantile,
        "draft_probs": [e.prob for e in run.draft[: policy.first_k]],
        "output_tokens": run.n_out,
        "finish_reason": run.finish_reason,
        "error": None if run.error is None else f"{type(run.error).__name__}: {str(run.error).splitlines()[0] if str(run.error) else ''}",
        "max_tokens": run.cfg.max_tokens,
        "temperature": run.cfg.temperature,
    }
    if run.error is not None and isinstance(run.error, GeneratorExit):
        record["error"] = "cancelled by the caller"
    if record.get("threshold") is None:
        record["threshold"] = policy.threshold
    if include_prompts:
        record["prompt"] = run.prompt
        record["messages"] = run.messages
        record["answer"] = "".join(run.text) if run.text is not None else None
    return _clean(record)
