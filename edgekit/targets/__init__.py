"""Target hardware: device profiles (presets and user TOML files) and detection of the host.

Nothing here imports torch, transformers or optimum; ``detect`` imports numpy and
onnxruntime only when it measures.
"""

from edgekit.targets.profile import (
    CoreCluster,
    PublishedRun,
    Sourced,
    TargetProfile,
    load_preset,
    load_profile_file,
    preset_names,
    save_profile,
)
from edgekit.targets.resolve import resolve_target

__all__ = [
    "TargetProfile", "Sourced", "CoreCluster", "PublishedRun", "load_preset", "load_profile_file", "preset_names",
    "resolve_target", "save_profile",
]
