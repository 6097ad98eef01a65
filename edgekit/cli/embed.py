"""``edgekit embed``: sentence embeddings from an encoder artifact."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgekit.cli import app
from edgekit.cli.options import json_option, threads_option
from edgekit.cli.output import out, print_json


@app.command("embed")
def embed_cmd(
    artifact: Path = typer.Argument(..., help="An encoder artifact folder (or a bare .onnx encoder).", show_default=False),
    texts: List[str] = typer.Argument(None, help="Texts to embed; read one per line from stdin when none are given.", show_default=False),
    as_json: bool = json_option("Print {'model', 'dim', 'vectors'} as JSON."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Texts per onnxruntime call."),
    threads: Optional[int] = threads_option("onnxruntime threads."),
):
    """Embed texts with the model's own pooling and normalisation (mean pooling for MiniLM).

    Prints one line per text (the first values of its vector, the dimension and the norm),
    or every value with --json.
    """
    import sys

    import numpy as np

    import edgekit
    from edgekit.errors import ConfigError

    if not texts:
        if sys.stdin.isatty():
            raise ConfigError("no texts to embed: pass them as arguments, or pipe one per line on stdin")
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ConfigError("no texts to embed: pass them as arguments or one per line on stdin")
    with edgekit.load(artifact, threads=threads) as model:
        vectors = model.embed(texts, batch_size=batch_size)
    if as_json:
        print_json({"model": str(artifact), "dim": int(vectors.shape[1]), "vectors": vectors.round(7).tolist()})
        return
    for text, vec in zip(texts, vectors):
        head = " ".join(f"{v:+.4f}" for v in vec[:6])
        out.print(f"[{head} …] dim={vec.shape[0]} norm={np.linalg.norm(vec):.4f}  {text[:60]!r}")
