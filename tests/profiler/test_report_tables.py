"""Reports say what they measured: every Markdown table edgekit writes parses back with its values
under their titles (issue 11, class 4: a ``|`` inside a title shifted every later column by one)."""

from __future__ import annotations

import json

import pytest

from edgekit.profiler.report import markdown, markdown_table, md_cell, prediction_rows
from edgekit.profiler.roofline import Prediction
from edgekit.profiler.schema import (
    ArtifactResult,
    BatchSummary,
    BenchReport,
    BenchSettings,
    DecoderSummary,
    EncoderSummary,
    GateSummary,
    Percentiles,
    RamCheck,
    RunRecord,
    Spread,
)
from edgekit.profiler.shape import shape_from_params


def split_row(line: str) -> list[str]:
    """The cells of one Markdown table row, as GitHub reads them: a backslash escapes the next character
    (``\\|`` is a pipe in the cell, ``\\\\`` a backslash), any other ``|`` ends the cell."""
    assert line.startswith("|") and line.endswith("|"), line
    cells, cell, i, body = [], "", 0, line[1:-1]
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] in "|\\":
            cell += body[i + 1]
            i += 2
            continue
        if body[i] == "|":
            cells.append(cell.strip())
            cell = ""
        else:
            cell += body[i]
        i += 1
    return cells + [cell.strip()]


def parse_tables(text: str) -> list[list[dict[str, str]]]:
    """Every table in a Markdown text as a list of {title: value} rows; asserts each row has one cell per title."""
    tables, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and set(lines[i + 1]) <= set("|-: "):
            head = split_row(lines[i])
            assert len(split_row(lines[i + 1])) == len(head), (lines[i], lines[i + 1])
            assert len(set(head)) == len(head), f"two columns share a title: {head}"
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = split_row(lines[i])
                assert len(cells) == len(head), f"{len(head)} titles but {len(cells)} cells:\n{lines[i]}"
                rows.append(dict(zip(head, cells)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def spread(x: float) -> Spread:
    return Spread(median=x, min=x * 0.9, max=x * 1.1, n=3)


def pct(x: float) -> Percentiles:
    return Percentiles(p50=x, p90=x * 1.5, p99=x * 2)


def run() -> RunRecord:
    return RunRecord(index=0, warmup=False, ok=True, wall_s=1.0, peak_rss_bytes=300_000_000, cpu_wait_fraction=0.02)


def prediction(target: str, *, decode=None, prefill=None, items=None) -> Prediction:
    return Prediction(target=target, threads=4, backend="llama.cpp", calibrated_on="x on host", bound="memory",
                      decode_tps=decode, prefill_tps=prefill, encoder_items_per_s=items, bytes_per_token=1,
                      flops_per_token=1, context=4096, weights_bytes=100_000_000, kv_bytes=0,
                      runtime_bytes=50_000_000, memory_bytes=777_000_000, ram_budget_bytes=6_500_000_000, fits=True)


def mixed_report() -> BenchReport:
    decoder = ArtifactResult(
        label="smol | q4", path="a.gguf", format="gguf", backend="llama.cpp", kind="decoder", precision="q4_k_m",
        size_bytes=100_000_000, gate=GateSummary(status="passed", metric="top1", value=0.987),
        shape=shape_from_params(10**8, "q4_k_m"), threads=2, status="ok", runs=[run()],
        peak_rss_bytes=spread(300e6),
        decoder=DecoderSummary(prompt_tokens=16, generated_tokens=8, decode_tokens=7, load_s=spread(0.25),
                               ttft_s=spread(0.05), prefill_tps=spread(321.0), decode_tps=spread(45.6),
                               token_latency_s=pct(0.02), forward_s=pct(0.018), token_overhead_s=0.002),
        predictions=[prediction("raspberry-pi-5", decode=12.3, prefill=98.7), prediction("pixel-8", decode=23.4, prefill=150.0)],
        ram_checks=[RamCheck(target="raspberry-pi-5", ram_budget_bytes=6_500_000_000, peak_rss_bytes=300_000_000,
                             exceeds_budget=False)],
    )
    encoder = ArtifactResult(
        label="minilm", path="m", format="onnx", backend="onnx", kind="encoder", precision="int8",
        size_bytes=20_000_000, gate=GateSummary(status="passed", metric="cos_mean", value=0.999),
        shape=shape_from_params(2 * 10**7, "int8"), threads=2, status="ok", runs=[run()], peak_rss_bytes=spread(120e6),
        encoder=EncoderSummary(prompt_tokens=16, load_s=spread(0.1), batches={
            "1": BatchSummary(latency_s=pct(0.004), items_per_s=250.0),
            "8": BatchSummary(latency_s=pct(0.02), items_per_s=400.0),
            "32": BatchSummary(latency_s=pct(0.07), items_per_s=456.7)}),
        predictions=[prediction("raspberry-pi-5", items=111.1)],
    )
    settings = BenchSettings(prompt_tokens=16, gen_tokens=8, runs=3, warmup=1, threads=2, context=None, timeout_s=60,
                             batch_reps=5, targets=["raspberry-pi-5", "pixel-8"])
    return BenchReport(created_at="now", edgekit_version="0", settings=settings, results=[encoder, decoder])


def test_bench_md_tables_line_up_for_decoders_and_encoders():
    text = markdown(mixed_report())
    measured, predicted = parse_tables(text)
    by_label = {row["artifact"]: row for row in measured}
    assert by_label["smol | q4"]["decode tok/s"] == "45.6" and by_label["smol | q4"]["prefill tok/s"] == "321.0"
    assert by_label["minilm"]["items/s (1/8/32)"] == "250.0/400.0/456.7"
    assert by_label["minilm"]["decode tok/s"] == "-"  # an encoder has no decode speed: "-", not an empty cell
    rows = {(row["artifact"], row["target"]): row for row in predicted}
    pi = rows[("smol | q4", "raspberry-pi-5")]
    assert pi["decode tok/s (predicted)"] == "12.3" and pi["prefill tok/s (predicted)"] == "98.7"
    assert pi["decode tok/s (measured on host)"] == "45.6"  # the host's measurement is not read as a prediction
    assert pi["memory (predicted)"] == "777 MB" and pi["fits"] == "yes" and pi["host peak RSS > budget"] == "no"
    assert rows[("smol | q4", "pixel-8")]["host peak RSS > budget"] == "-"
    enc = rows[("minilm", "raspberry-pi-5")]
    assert enc["items/s at batch 32 (predicted)"] == "111.1" and enc["items/s at batch 32 (measured on host)"] == "456.7"
    assert enc["decode tok/s (predicted)"] == "-" and pi["items/s at batch 32 (predicted)"] == "-"
    assert not any("|" in title for row in predicted for title in row)  # no title holds the separator


def test_prediction_columns_follow_the_kinds_benched():
    only_decoders = mixed_report()
    only_decoders.results = only_decoders.results[1:]
    cols = list(prediction_rows(only_decoders)[0])
    assert "decode tok/s (predicted)" in cols and not any("items/s" in c for c in cols)
    (table,) = parse_tables(markdown_table(prediction_rows(only_decoders)))
    assert [row["decode tok/s (predicted)"] for row in table] == ["12.3", "23.4"]


@pytest.mark.parametrize("value", ["a | b", "x|y|z", "line one\nline two", "ends with |", "\\|", "C:\\m\\", "\\\\|"])
def test_markdown_cells_keep_their_column(value):
    rows = [{"name": value, "speed": "1.0", "a | title": "2.0"}, {"name": "plain", "speed": "3.0"}]
    (table,) = parse_tables(markdown_table(rows))
    assert [row["speed"] for row in table] == ["1.0", "3.0"]
    assert [row["a | title"] for row in table] == ["2.0", "-"]
    assert table[0]["name"] == " ".join(value.splitlines()).strip()
    assert "\n" not in md_cell(value)


def test_failed_runs_section_and_tables_of_a_failed_artifact_line_up():
    report = mixed_report()
    report.results[1] = report.results[1].model_copy(update={"status": "failed", "error": "run crashed | signal 9",
                                                             "decoder": None, "predictions": []})
    text = markdown(report)
    (measured, predicted) = parse_tables(text)
    assert {row["artifact"] for row in measured} == {"minilm", "smol | q4"}
    assert [row["artifact"] for row in predicted] == ["minilm"]
    assert "- smol | q4: run crashed | signal 9" in text


def test_device_tables_line_up():
    from edgekit.profiler.schema import PredictionCheck

    report = mixed_report()
    check = PredictionCheck(target="pi | 5", profile_source="preset", calibrated_on="x", decode_tps_predicted=12.3,
                            decode_tps_measured=10.0, decode_error_pct=23.0)
    report.results = [r.model_copy(update={"device": "pi | lab", "check": check if r.decoder else None})
                      for r in report.results]
    tables = parse_tables(markdown(report))  # asserts every row has one cell per title
    assert tables and all(row["device"] == "pi | lab" for table in tables if "device" in table[0] for row in table)
    assert {row["artifact"] for table in tables for row in table} == {"minilm", "smol | q4"}


@pytest.mark.slow
def test_bench_md_of_a_real_decoder_and_encoder_bench(cli, tmp_path, tiny_gguf_artifact, tiny_bert):
    from edgekit.exporters.onnx import export_onnx

    encoder = export_onnx(tiny_bert, tmp_path / "tiny-bert").path
    out = tmp_path / "report"
    proc = cli("bench", tiny_gguf_artifact, encoder, "--runs", "1", "--warmup", "0", "--prompt-tokens", "8",
               "--gen-tokens", "4", "--batch-reps", "1", "--target", "raspberry-pi-5", "--report", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = BenchReport.model_validate(json.loads((out / "bench.json").read_text()))
    measured, predicted = parse_tables((out / "bench.md").read_text())
    dec, enc = report.results
    rows = {row["artifact"]: row for row in predicted}
    assert rows[dec.label]["decode tok/s (predicted)"] == f"{dec.predictions[0].decode_tps:,.1f}"
    assert rows[dec.label]["decode tok/s (measured on host)"] == f"{dec.decoder.decode_tps.median:,.1f}"
    assert rows[enc.label]["items/s at batch 32 (predicted)"] == f"{enc.predictions[0].encoder_items_per_s:,.1f}"
    assert rows[enc.label]["items/s at batch 32 (measured on host)"] == f"{enc.encoder.batches['32'].items_per_s:,.1f}"
    assert {row["artifact"]: row["decode tok/s"] for row in measured}[dec.label] == f"{dec.decoder.decode_tps.median:,.1f}"
