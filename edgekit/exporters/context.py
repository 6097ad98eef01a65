"""One export context per export: what every step needs, derived once at the start and passed down.

Before it, one ``export onnx --quant int4`` parsed config.json three times, resolved the model family three
times, read each safetensors header four times and built the tokenizer three times; each step re-derived
what the one before had. Each exporter checks the user's inputs first (quantization, output path, prompts,
gate bounds, source) and then builds its context; the rest is derived on first use and kept
(``tests/exporters/test_context.py`` counts the reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import UnsupportedModelError
from edgekit.families import Family, Shape, shape_of
from edgekit.manifest import ModelInfo, model_info_from_folder
from edgekit.quants import Quant
from edgekit.safetensors_io import TensorRef, scan_safetensors
from edgekit.sources import ResolvedSource


@dataclass
class ExportContext:
    """The source (its config and checked safetensors headers), the quantization row, the prompts and the
    caller's gate overrides of one export; the family row, shape, tensors, model facts and tokenizer on demand."""

    source: ResolvedSource
    quant: Quant
    prompts: list[str]
    thresholds: dict[str, float] | None = None  # the caller's overrides of the gate's bounds
    task: str = "text-generation"
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def config(self) -> dict[str, Any]:
        return self.source.config

    @property
    def path(self) -> Path:
        return self.source.path

    def _once(self, key: str, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def shape(self) -> Shape:
        return self._once("shape", lambda: shape_of(self.config))

    def family(self, exporter: str) -> Family:
        """The family row for ``exporter`` ("gguf", or "onnx": the fused builder's checks included); the
        :class:`UnsupportedModelError` saying why not is raised again on every call."""
        def resolve():
            try:
                if exporter == "onnx":
                    from edgekit.exporters.onnx_fused.specs import fused_spec_for

                    return fused_spec_for(self.config)
                from edgekit.families import family_for

                return family_for(self.config, exporter)
            except UnsupportedModelError as exc:
                return exc
        found = self._once(f"family:{exporter}", resolve)
        if isinstance(found, UnsupportedModelError):
            raise found
        return found

    def covers(self, exporter: str) -> bool:
        try:
            self.family(exporter)
        except UnsupportedModelError:
            return False
        return True

    @property
    def refs(self) -> dict[str, TensorRef]:
        """Every tensor of the safetensors checkpoint, from the headers :func:`resolve_source` read."""
        return self._once("refs", lambda: scan_safetensors(self.source.weight_files, self.source.headers))

    @property
    def n_params(self) -> int | None:
        return None if self.source.pickle_weights else sum(r.n for r in self.refs.values())

    @property
    def info(self) -> ModelInfo:
        """The manifest's model facts (tokenizer size added by :meth:`with_tokenizer_size`)."""
        return self._once("info", lambda: model_info_from_folder(self.path, self.task, n_params=self.n_params,
                                                                config=self.config))

    def tokenizer(self, folder: Path, max_length: int | None = None):
        """The artifact's tokenizer from ``folder`` (the staging folder once its files are there), built once."""
        from edgekit.runtimes.tokenizer import HFTokenizer

        return self._once(f"tokenizer:{Path(folder)}:{max_length}", lambda: HFTokenizer(folder, max_length=max_length))

    def with_tokenizer_size(self, folder: Path) -> ModelInfo:
        """:attr:`info` with the size of ``folder``'s tokenizer recorded (the gate cannot see one cut short later)."""
        self._cache["info"] = self.info.model_copy(update={"tokenizer_size": self.tokenizer(folder).vocab_size})
        return self._cache["info"]
