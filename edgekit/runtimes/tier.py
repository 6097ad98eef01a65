"""The Tier protocol: what every answering tier offers, whether local, remote or routed.

A :class:`~edgekit.runtimes.base.Model` (a local artifact), a
:class:`~edgekit.router.remote.RemoteLLM` (an OpenAI-compatible server) and a
:class:`~edgekit.router.router.Router` (the two behind a fallback policy) each satisfy
it, so code that only needs answers (``edgekit run``, calibration, a server) takes
any of them, and a Router's remote may be any tier. ``isinstance(x, Tier)`` checks
that the methods are there (a structural check: nothing inherits from Tier).

The contract the three share (tests/router/test_tier.py holds each of them to it):

* ``generate(prompt)`` and ``stream(prompt)`` take a string; ``chat(messages)`` and
  ``stream_chat(messages)`` a non-empty list of ``{"role": ..., "content": ...}`` dicts.
* Settings are a :class:`GenerationConfig`, keyword overrides of its fields
  (``max_tokens=16``), or both (the overrides win). A non-string prompt, malformed
  messages, an unknown setting or a config of another type raise ConfigError when
  the method is called, before any work is done.
* ``generate`` and ``chat`` return a :class:`GenerationResult`; ``stream`` and
  ``stream_chat`` an iterator of :class:`TokenEvent` whose texts join into what the
  non-streaming call returns (greedy decoding), and whose last event, and only that
  one, carries ``finish_reason`` and ``timings``. At most ``max_tokens`` tokens are
  generated. Close a stream (``close()``) to stop early and free the tier.
* ``close()`` releases what the tier holds (a model, connections).

What differs between tiers: a remote answer has no token ids or probabilities
(``token_ids`` empty, ``token_id`` -1, ``prob`` and ``entropy`` NaN), its events are
the server's text deltas (the last may be empty: it only carries the finish), and a
stop string the server matched is reported as ``"eos"`` (the API does not say which it
was; one the client had to cut, from a server that ignores ``stop``, is ``"stop"``).
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

from edgekit.runtimes.base import GenerationConfig, GenerationResult, TokenEvent


@runtime_checkable
class Tier(Protocol):
    """Anything that answers prompts and chats with the same types: Model, RemoteLLM, Router."""

    def generate(self, prompt: str, config: GenerationConfig | None = None, **overrides: Any) -> GenerationResult:
        """Generate a continuation of ``prompt`` (remote tiers send it as one user message)."""
        ...

    def stream(self, prompt: str, config: GenerationConfig | None = None, **overrides: Any) -> Iterator[TokenEvent]:
        """:meth:`generate`, token by token as they come."""
        ...

    def chat(self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides: Any) -> GenerationResult:
        """Answer a conversation (the local model's chat template, or the server's)."""
        ...

    def stream_chat(
        self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides: Any
    ) -> Iterator[TokenEvent]:
        """:meth:`chat`, token by token as they come."""
        ...

    def close(self) -> None:
        """Release the tier's resources."""
        ...


__all__ = ["Tier"]
