"""Structured output: what a JSON schema costs edgekit, and edgekit against llama-cpp-python's own JSON grammar.

    .venv/bin/python benchmarks/structured.py [--rounds 3] [--threads 2] [--gguf PATH]

On the packaged SmolLM2 GGUF (or --gguf), greedy, the same chat prompts on every side (extraction of a person,
a city, an order, a mood and an event from short sentences, one JSON schema each). Each side runs in a fresh
process per round, the sides alternating and their order rotating from round to round, so background load hits
them alike:
  * ``free``: edgekit, no constraint (the prompts ask for JSON in words only);
  * ``schema``: edgekit with ``response_format`` = the JSON schema (llguidance's token masks);
  * ``llama-grammar``: llama-cpp-python's ``create_chat_completion`` with
    ``LlamaGrammar.from_json_schema`` on the same file.
Prints per side the median over rounds of decode tokens/s (generated tokens after the first / time after the
first), the share of answers that parse and validate (``jsonschema``), then the ratios: schema / free
(goal >= 0.9) and schema / llama-grammar (goal >= 1.2, with every answer valid on both sides). Also the time to
compile a schema in edgekit (first, and again from the cache), to build llguidance's token table for the model
(once per loaded model), and llama-cpp-python's ``from_json_schema``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

SCHEMAS = {
    "person": {"type": "object", "additionalProperties": False, "required": ["name", "age"],
               "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 130}}},
    "city": {"type": "object", "additionalProperties": False, "required": ["city", "country", "population"],
             "properties": {"city": {"type": "string"}, "country": {"type": "string"},
                            "population": {"type": "integer", "minimum": 0}}},
    "order": {"type": "object", "additionalProperties": False, "required": ["items"],
              "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
                  "type": "object", "additionalProperties": False, "required": ["product", "quantity"],
                  "properties": {"product": {"type": "string", "enum": ["apple", "pear", "bread", "milk"]},
                                 "quantity": {"type": "integer", "minimum": 1, "maximum": 12}}}}}},
    "mood": {"type": "object", "additionalProperties": False, "required": ["mood"],
             "properties": {"mood": {"type": "string", "enum": ["happy", "sad", "angry", "neutral"]}}},
    "event": {"type": "object", "additionalProperties": False, "required": ["title", "day"],
              "properties": {"title": {"type": "string"}, "day": {"type": "string", "enum": [
                  "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]}}},
}
SENTENCES = {
    "person": ["Alice is 31.", "Bob turned 45 yesterday.", "My aunt Carla is 67 years old.", "Henry, 88, plays chess."],
    "city": ["Paris is the capital of France with about 2 million people.", "Oslo is in Norway and has 700000 people.",
             "Rome, Italy, has 2.8 million inhabitants.", "Lima is the capital of Peru, 10 million people."],
    "order": ["Two apples please.", "I need milk and three loaves of bread.", "Four apples, two pears.", "Ten apples."],
    "mood": ["I love this sunny day!", "This is the worst service ever.", "My dog is sick.", "It is a normal Tuesday."],
    "event": ["Team lunch on Friday.", "Dentist on Monday.", "Book club on Wednesday.", "Yoga on Sunday."],
}
SIDES = ("free", "schema", "llama-grammar")
MAX_TOKENS = 96


def _requests():
    for name, sentences in SENTENCES.items():
        for s in sentences:
            msg = f"Extract the facts as a JSON object with the keys {', '.join(SCHEMAS[name]['required'])}: {s}"
            yield name, [{"role": "user", "content": msg}]


def _valid(text: str, schema: dict) -> bool:
    import jsonschema

    try:
        jsonschema.validate(json.loads(text), schema)
        return True
    except (ValueError, jsonschema.ValidationError):
        return False


def worker(side: str, gguf: str, threads: int) -> dict:
    tokens = seconds = valid = answers = 0
    extra: dict = {}
    if side == "llama-grammar":
        from llama_cpp import Llama, LlamaGrammar

        llm = Llama(gguf, n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
        t = time.perf_counter()
        grammars = {name: LlamaGrammar.from_json_schema(json.dumps(s), verbose=False) for name, s in SCHEMAS.items()}
        extra["compile_s_per_schema"] = (time.perf_counter() - t) / len(SCHEMAS)
        for name, msgs in _requests():
            pieces, t_first = [], None
            for chunk in llm.create_chat_completion(msgs, grammar=grammars[name], max_tokens=MAX_TOKENS,
                                                    temperature=0.0, stream=True):
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    if t_first is None:
                        t_first = time.perf_counter()
                    pieces.append(piece)
            if t_first is not None and len(pieces) > 1:
                tokens += len(pieces) - 1
                seconds += time.perf_counter() - t_first
            answers += 1
            valid += _valid("".join(pieces), SCHEMAS[name])
        llm.close()
        return {"tokens": tokens, "seconds": seconds, "valid": valid, "answers": answers, **extra}
    import edgekit
    from edgekit.runtimes.constrain import response_format

    model = edgekit.load(gguf, threads=threads, context=1024)
    formats = {}
    if side == "schema":
        t = time.perf_counter()
        for name, s in SCHEMAS.items():
            formats[name] = response_format({"type": "json_schema", "json_schema": {"name": name, "schema": s}})
        extra["compile_s_per_schema"] = (time.perf_counter() - t) / len(SCHEMAS)
        t = time.perf_counter()
        for name, s in SCHEMAS.items():
            response_format({"type": "json_schema", "json_schema": {"name": name, "schema": s}})
        extra["cached_s_per_schema"] = (time.perf_counter() - t) / len(SCHEMAS)
        t = time.perf_counter()
        model._lltok = model._make_lltokenizer()
        extra["token_table_s"] = time.perf_counter() - t
    for name, msgs in _requests():
        r = model.chat(msgs, max_tokens=MAX_TOKENS, response_format=formats.get(name))
        if r.timings.decode_tokens:
            tokens += r.timings.decode_tokens
            seconds += r.timings.decode_s
        answers += 1
        valid += _valid(r.text, SCHEMAS[name])
    model.close()
    return {"tokens": tokens, "seconds": seconds, "valid": valid, "answers": answers, **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gguf", help="a GGUF file (default: the packaged SmolLM2)")
    ap.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.gguf is None:
        from edgekit.packaged import smollm2_gguf_path

        args.gguf = str(smollm2_gguf_path())
    if args.worker:
        print(json.dumps(worker(args.worker, args.gguf, args.threads)))
        return
    results: dict[str, list[dict]] = {s: [] for s in SIDES}
    for r in range(args.rounds):
        order = SIDES[r % 3:] + SIDES[:r % 3]
        for side in order:
            out = subprocess.run([sys.executable, __file__, "--worker", side, "--gguf", args.gguf,
                                  "--threads", str(args.threads)], capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[side].append(res)
            print(f"round {r + 1} {side:14s} {res['tokens'] / res['seconds']:7.1f} tok/s  valid "
                  f"{res['valid']}/{res['answers']}", file=sys.stderr)
    tps = {s: statistics.median(x["tokens"] / x["seconds"] for x in results[s]) for s in SIDES}
    print(f"\nSmolLM2 {args.gguf.rsplit('/', 1)[-1]}, {args.threads} threads, {args.rounds} rounds, "
          f"{sum(1 for _ in _requests())} prompts per side, greedy, max_tokens {MAX_TOKENS}")
    print("| side | decode tok/s (median) | valid answers |")
    print("|---|---|---|")
    for s in SIDES:
        v = results[s][-1]
        print(f"| {s} | {tps[s]:.1f} | {v['valid']}/{v['answers']} |")
    print(f"\nschema / free: {tps['schema'] / tps['free']:.2f}x (goal >= 0.9)")
    print(f"schema / llama-grammar: {tps['schema'] / tps['llama-grammar']:.2f}x (goal >= 1.2)")
    ek = results["schema"][-1]
    print(f"edgekit schema compile: {ek['compile_s_per_schema'] * 1e3:.2f} ms first, "
          f"{ek['cached_s_per_schema'] * 1e6:.1f} us cached; llguidance token table: {ek['token_table_s']:.2f} s once "
          f"per model; llama-cpp-python from_json_schema: "
          f"{results['llama-grammar'][-1]['compile_s_per_schema'] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
