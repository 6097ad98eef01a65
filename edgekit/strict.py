"""One strict pydantic base and one loader for every versioned file edgekit reads.

Every file format edgekit owns (``edgekit.json``, target profiles, ``edgekit.toml``,
cached calibrations, bench reports) is a :class:`StrictModel`: an unknown key is an
error, not silently dropped, so a typo never turns into a default. The top-level
model of a file has ``schema_version: int = N``; :func:`load_versioned` checks it
before validating and turns pydantic's ``ValidationError`` into one line of the
caller's edgekit error type, naming the file and the field.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from edgekit.errors import ConfigError, UserError, describe_validation, short_repr


class StrictModel(BaseModel):
    """A pydantic model that refuses unknown keys (fields may start with ``model_``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


M = TypeVar("M", bound=BaseModel)


def current_version(model_cls: type[BaseModel]) -> int:
    """The ``schema_version`` this edgekit writes and reads for ``model_cls`` (its field's default)."""
    field = model_cls.model_fields.get("schema_version")
    if field is None or not isinstance(field.default, int):
        raise TypeError(f"{model_cls.__name__} has no schema_version field with an integer default")
    return field.default


def load_versioned(
    model_cls: type[M], data: Any, *, where: str, error: type[UserError] = ConfigError, hint: str = "",
    version_required: bool = False,
) -> M:
    """Validate ``data`` (a parsed JSON/TOML file) as ``model_cls``, checking ``schema_version`` first.

    ``where`` names the file in messages; ``error`` is the edgekit error raised; ``hint`` (what to do)
    ends every message. A ``schema_version`` newer than this edgekit reads asks to upgrade edgekit;
    any other mismatch (older, not an integer, or missing when ``version_required``) names both versions.
    A missing ``schema_version`` otherwise means the current one.
    """
    current = current_version(model_cls)
    tail = f": {hint}" if hint else ""
    if not isinstance(data, dict):
        raise error(f"{where} has schema_version None; this edgekit reads version {current}{tail}")
    version = data.get("schema_version", None if version_required else current)
    if isinstance(version, int) and not isinstance(version, bool) and version > current:
        raise error(
            f"{where} has schema_version {short_repr(version)}, newer than this edgekit reads ({current}): "
            "upgrade edgekit (pip install -U edgekit)"
        )
    if version != current:
        raise error(f"{where} has schema_version {short_repr(version)}; this edgekit reads version {current}{tail}")
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise error(describe_validation(exc, where) + (f"; {hint}" if hint else "")) from exc
