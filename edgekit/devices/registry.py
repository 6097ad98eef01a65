"""The devices edgekit knows: ``devices.toml`` in the user's config folder, one ``[[devices]]`` table each.

The config folder is ``$EDGEKIT_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/edgekit``,
else ``~/.config/edgekit``. A device is a name and an SSH address: a host
(a name, an address, or a ``Host`` alias of ``~/.ssh/config``), with an optional
user and port; everything else about connecting (keys, ProxyJump, the agent)
comes from ``~/.ssh``. No secret is ever stored here: a password in an
``ssh://`` address is refused. ``setup`` records the device's Python and the
edgekit build it installed; ``targets detect --device`` records the profile it
measured.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field

from edgekit import tomlio
from edgekit.errors import ConfigError
from edgekit.fileio import write_text_atomic
from edgekit.strict import StrictModel, load_versioned

REGISTRY_VERSION = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # the target profiles' names: a device's profile takes its name
HOST_RE = re.compile(r"^[A-Za-z0-9_.:\[\]%-]+$")


class Device(StrictModel):
    """One device: where it is, and what ``setup`` left there."""

    name: str
    host: str = Field(description="host name, address, or a Host alias of ~/.ssh/config")
    user: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    remote_dir: str = Field(".edgekit", description="edgekit's folder on the device, relative to its home")
    python: str | None = Field(None, description="the device's Python for runs (set by setup)")
    pythonpath: str | None = Field(None, description="where setup unpacked edgekit, for an existing Python")
    build: str | None = Field(None, description="the edgekit build (wheel digest) setup installed")
    edgekit_version: str | None = None
    memory_limit_mb: int | None = Field(None, ge=16, description="resident memory a run may use on the device; above it the run is killed (SIGKILL)")
    profile: str | None = Field(None, description="target profile measured by 'targets detect --device'")

    @property
    def address(self) -> str:
        """``user@host:port`` as far as known here (the rest comes from ~/.ssh/config)."""
        return f"{self.user + '@' if self.user else ''}{self.host}{':' + str(self.port) if self.port else ''}"


class Registry(StrictModel):
    schema_version: int = REGISTRY_VERSION
    devices: list[Device] = Field(default_factory=list)


def config_dir() -> Path:
    """edgekit's config folder: $EDGEKIT_CONFIG_DIR, else $XDG_CONFIG_HOME/edgekit, else ~/.config/edgekit."""
    if os.environ.get("EDGEKIT_CONFIG_DIR"):
        return Path(os.environ["EDGEKIT_CONFIG_DIR"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / "edgekit"


def registry_path() -> Path:
    return config_dir() / "devices.toml"


def profile_path(name: str) -> Path:
    """Where 'targets detect --device NAME' keeps the device's measured profile."""
    return config_dir() / "devices" / f"{name}.toml"


def load_registry() -> Registry:
    path = registry_path()
    if not path.exists():
        return Registry()
    return load_versioned(Registry, tomlio.load_file(path), where=str(path), error=ConfigError,
                          hint="fix or remove the file ('edgekit devices add' writes it)")


def save_registry(reg: Registry) -> Path:
    path = registry_path()
    data = reg.model_dump(mode="json", exclude_none=True)
    text = tomlio.dumps(data) if reg.devices else f"schema_version = {REGISTRY_VERSION}\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}: set EDGEKIT_CONFIG_DIR to a writable folder") \
            from exc
    return path


def parse_address(address: str) -> tuple[str, str | None, int | None]:
    """(host, user, port) of ``ssh://user@host:port``, ``user@host`` or a bare host / ~/.ssh/config alias."""
    text = address.strip()
    if not text:
        raise ConfigError("address is empty: pass ssh://user@host[:port] or a Host alias of ~/.ssh/config",
                          param="address")
    if "://" not in text:
        text = "ssh://" + text
    parts = urlsplit(text)
    if parts.scheme != "ssh":
        raise ConfigError(f"address {address!r}: only ssh:// addresses are supported", param="address")
    if parts.password is not None:
        raise ConfigError("address holds a password: edgekit never stores one; use a key (IdentityFile in "
                          "~/.ssh/config) or the SSH agent", param="address")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"address {address!r}: the port must be a number from 1 to 65535", param="address") from None
    host = parts.hostname or ""
    if not host or not HOST_RE.match(host) or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"address {address!r} is not ssh://user@host[:port] or a Host alias", param="address")
    return host, parts.username or None, port


def get_device(name: str) -> Device:
    reg = load_registry()
    for d in reg.devices:
        if d.name == name:
            return d
    known = ", ".join(d.name for d in reg.devices) or "none yet"
    raise ConfigError(f"no device named {name!r} (known: {known}): add it with 'edgekit devices add {name} "
                      "ssh://user@host'", param="device")


def add_device(name: str, address: str, *, memory_limit_mb: int | None = None, remote_dir: str = ".edgekit",
               force: bool = False) -> Device:
    """Register ``name`` at ``address``; ``force`` replaces a device of that name."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"device name {name!r} must be lower case letters, digits, '.', '_' or '-'", param="name")
    if remote_dir.startswith("/") or ".." in Path(remote_dir).parts or not remote_dir.strip():
        raise ConfigError(f"remote_dir={remote_dir!r} must be a folder relative to the device's home",
                          param="remote_dir")
    host, user, port = parse_address(address)
    reg = load_registry()
    if any(d.name == name for d in reg.devices) and not force:
        raise ConfigError(f"a device named {name!r} exists: remove it first or pass force=True", param="force")
    device = Device(name=name, host=host, user=user, port=port, memory_limit_mb=memory_limit_mb, remote_dir=remote_dir)
    reg.devices = [d for d in reg.devices if d.name != name] + [device]
    save_registry(reg)
    return device


def update_device(device: Device) -> None:
    """Write ``device`` back (replacing the entry of the same name)."""
    reg = load_registry()
    reg.devices = [device if d.name == device.name else d for d in reg.devices]
    if not any(d.name == device.name for d in reg.devices):
        reg.devices.append(device)
    save_registry(reg)


def remove_device(name: str) -> Device:
    device = get_device(name)
    reg = load_registry()
    reg.devices = [d for d in reg.devices if d.name != name]
    save_registry(reg)
    return device
