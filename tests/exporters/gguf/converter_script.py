"""A converter with llama.cpp's convert_hf_to_gguf.py command line (MODEL --outfile F --outtype T),
implemented with edgekit's own converter: the delegate path runs a real conversion in a subprocess.
With EDGEKIT_TEST_CONVERTER_FAIL set it fails the way a converter does on an unknown model."""

import argparse
import os
import sys
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--outfile", required=True)
parser.add_argument("--outtype", default="f16")
args = parser.parse_args()
if os.environ.get("EDGEKIT_TEST_CONVERTER_FAIL"):
    print("INFO:hf-to-gguf:Loading model", file=sys.stderr)
    print("ERROR:hf-to-gguf:Model FancyForCausalLM is not supported", file=sys.stderr)
    sys.exit(1)

from edgekit.exporters.gguf.convert import convert  # noqa: E402
from edgekit.sources import resolve_source  # noqa: E402

convert(resolve_source(args.model), Path(args.outfile), args.outtype)
