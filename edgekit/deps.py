"""Optional dependencies imported in one place each, with the :class:`MissingDependencyError` naming the extra."""

from __future__ import annotations

import logging

from edgekit.errors import MissingDependencyError


def llama_cpp_module(purpose: str = "GGUF models"):
    """llama_cpp (llama-cpp-python), with its Python logger quieted to errors (as ``Llama(verbose=False)`` sets it).

    ``purpose`` completes the error when it is missing: "llama-cpp-python (for GGUF models) is not installed".
    """
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError(f"llama-cpp-python (for {purpose})", "gguf") from exc
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return llama_cpp
