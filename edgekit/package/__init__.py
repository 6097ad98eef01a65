"""Mobile packaging: one folder an Android or iOS app bundles, made from an edgekit artifact.

    import edgekit
    pkg = edgekit.package("out/smollm2-int8", "out/smollm2-android", platform="android", target="pixel-8")
    print(pkg.size_report["runtime"]["estimated_bytes"])

A package holds the model (``model.ort`` for ONNX artifacts, the ``.gguf`` as it is for GGUF),
``runtime.json`` (execution providers and session options, or llama.cpp's parameters),
``tokenizer.json``, ``package.json`` (model, sizes and hashes, context, special tokens, the chat
template as Jinja and as per-role strings, recommended generation settings, the gate metrics)
and ``size_report.json``; ONNX packages add ``required_operators.config`` (with the build flags
in the size report) and ``ep_report.json``. See :func:`edgekit.package.build.package`.

``edgekit.package`` is both this module and the function: importing a submodule binds the
module as the attribute ``edgekit.package``, so the module itself is callable and calling it
calls :func:`package`.
"""

from __future__ import annotations

import sys
import types

from edgekit.package.build import Package, package
from edgekit.package.schema import PACKAGE_NAME, PLATFORMS, PackageManifest, is_package, read_package

__all__ = ["Package", "PackageManifest", "PACKAGE_NAME", "PLATFORMS", "is_package", "package", "read_package"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> Package:
        return package(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
