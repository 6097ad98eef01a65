"""Turn a ``--target`` value into a :class:`TargetProfile`: a preset name, 'host', or a TOML file.

Its own module because it needs both halves of ``targets``: the profile files
(``profile.py``) and the detection of the host (``detect.py``, which builds a
profile and so imports ``profile.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgekit.errors import ConfigError
from edgekit.targets.detect import host_profile
from edgekit.targets.profile import TargetProfile, load_preset, load_profile_file


def resolve_target(spec: str) -> TargetProfile:
    """A preset name, 'host' (detected now, cached briefly), or a path to a TOML profile."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("target needs a preset name, 'host', or a .toml file", param="target")
    if spec == "host":
        return host_profile()
    if spec.endswith(".toml") or os.sep in spec or Path(spec).is_file():
        return load_profile_file(spec)
    return load_preset(spec)
