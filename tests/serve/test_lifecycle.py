"""Cancellation, shutdown and the command line: a client that leaves frees the model; SIGTERM stops cleanly."""

from __future__ import annotations

import json
import signal
import socket
import threading

import httpx
import pytest

from edgekit.router import Policy, Router
from tests.serve.conftest import KEY_ENV, metrics_of, total, wait_until

QUESTION = [{"role": "user", "content": "Tell me a long story about a dragon."}]
# Long enough to outlive any grace period on any host (1-thread decode here: 130-160 tok/s, so 400 tokens
# could end within the 2 s shutdown grace on a quiet, fast host and never be cancelled).
LONG_TOKENS = 1500
LONG_ANSWER = {"messages": QUESTION, "max_tokens": LONG_TOKENS, "ignore_eos": True}


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_client_that_disconnects_mid_stream_frees_the_model(serve_app, local_gguf, tmp_path):
    log = tmp_path / "decisions.jsonl"
    server = serve_app(Router(local_gguf, None, Policy(threshold=0.0), decision_log=log), max_queue=0)
    with httpx.stream("POST", server.base + "/chat/completions", json={**LONG_ANSWER, "stream": True}, timeout=60) as r:
        assert r.status_code == 200
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data: ")
            if seen == 4:
                break  # leave: the connection closes with the block
    wait_until(lambda: len(_records(log)) == 1, what="the cancelled request's decision record")
    rec = _records(log)[0]
    assert rec["error"] == "cancelled by the caller" and 3 <= rec["output_tokens"] < LONG_TOKENS
    # max_queue=0: with the slot still held this would be a 503
    r = httpx.post(server.base + "/chat/completions", json={"messages": QUESTION, "max_tokens": 3}, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    m = metrics_of(server.url, key=None)
    assert total(m, "edgekit_requests_total", outcome="cancelled") == 1 and total(m, "edgekit_requests_total", outcome="ok") == 1


def test_a_client_that_leaves_a_non_streamed_request_cancels_it_too(serve_app, local_gguf, tmp_path):
    log = tmp_path / "decisions.jsonl"
    server = serve_app(Router(local_gguf, None, Policy(threshold=0.0), decision_log=log))
    body = json.dumps(LONG_ANSWER).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        wait_until(lambda: total(metrics_of(server.url, key=None), "edgekit_busy_slots", lane="local") == 1,
                   what="the request starting")
    wait_until(lambda: len(_records(log)) == 1, what="the cancelled request's decision record")
    rec = _records(log)[0]
    assert rec["error"] == "cancelled by the caller" and rec["output_tokens"] < LONG_TOKENS
    wait_until(lambda: total(metrics_of(server.url, key=None), "edgekit_busy_slots", lane="local") == 0,
               what="the slot being freed")


def test_sigterm_with_requests_in_flight_finishes_or_cancels_them_and_exits_0(serve_cli, smollm2_gguf, llama_server, tmp_path):
    log = tmp_path / "decisions.jsonl"
    sp = serve_cli(smollm2_gguf, "--remote", llama_server.url, "--model", "smollm2", "--api-key-env", KEY_ENV,
                   "--threshold", "0", "--decision-log", log, "--threads", "1", "--replicas", "2",
                   "--shutdown-timeout", "2", "--no-access-log")
    results: dict = {}

    def long_stream():
        events = []
        with httpx.stream("POST", sp.base + "/chat/completions", json={**LONG_ANSWER, "stream": True}, timeout=120) as r:
            results["stream_status"] = r.status_code
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    results["stream_events"] = len(events)
        results["stream"] = events

    def short(name, n):
        r = httpx.post(sp.base + "/chat/completions", json={"messages": QUESTION, "max_tokens": n}, timeout=120)
        results[name] = r

    threads = [threading.Thread(target=long_stream)]
    threads[0].start()
    wait_until(lambda: results.get("stream_events", 0) >= 3, what="the stream's first tokens")
    threads.append(threading.Thread(target=short, args=("short", 24)))
    threads[1].start()
    wait_until(lambda: total(metrics_of(sp.url, key=None), "edgekit_busy_slots", lane="local") == 2, what="both replicas busy")
    threads.append(threading.Thread(target=short, args=("queued", 4)))
    threads[2].start()
    wait_until(lambda: total(metrics_of(sp.url, key=None), "edgekit_queue_depth", lane="local") == 1, what="one request queued")

    assert sp.stop(signal.SIGTERM) == 0
    for th in threads:
        th.join(60)
        assert not th.is_alive()
    output = sp.log.read_text()
    assert "Traceback" not in output
    # the long stream was cut by the shutdown: an error event, no [DONE]
    assert results["stream_status"] == 200 and results["stream"][-1] != "[DONE]"
    assert json.loads(results["stream"][-1])["error"]["code"] == "cancelled"
    # the short one either finished in the grace period or was cancelled with a 503
    assert results["short"].status_code in (200, 503)
    # the one waiting for a slot was turned away at once, told when to come back
    assert results["queued"].status_code == 503 and results["queued"].headers["retry-after"]
    # the decision log has a complete record for every request that started
    records = _records(log)
    assert len(records) == 2
    assert {r["error"] for r in records} <= {None, "cancelled by the caller"}
    assert any(r["error"] == "cancelled by the caller" and r["output_tokens"] < LONG_TOKENS for r in records)


def test_keys_from_a_file_and_sigint_stops_the_server_with_status_0(serve_cli, smollm2_gguf, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# clients\nsk-from-file-one-1111\n\nsk-from-file-two-2222\n")
    sp = serve_cli(smollm2_gguf, "--threads", "1", "--api-key-file", keys)
    output = sp.log.read_text()
    assert "edgekit serve: http://127.0.0.1:" in output and "API keys: 2" in output and "sk-from-file" not in output
    assert httpx.get(sp.base + "/models", timeout=30).status_code == 401
    for key in ("sk-from-file-one-1111", "sk-from-file-two-2222"):
        assert httpx.get(sp.base + "/models", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code == 200
    assert sp.stop(signal.SIGINT) == 0
    assert "sk-from-file" not in sp.log.read_text()


def test_loopback_is_the_default_and_a_wider_bind_without_keys_warns():
    from edgekit.serve.server import loopback_warning
    from edgekit.serve.settings import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    assert loopback_warning("127.0.0.1", ()) is None
    assert "without API keys" in loopback_warning("0.0.0.0", ())
    assert loopback_warning("0.0.0.0", ("sk-some-key-1",)) is None


def test_cli_warns_beyond_loopback_and_fails_at_once_on_a_taken_port(cli, smollm2_gguf):
    from tests.conftest import error_line

    with socket.socket() as taken:  # held on loopback: binding the wildcard address on its port fails too
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli("serve", smollm2_gguf, "--host", "0.0.0.0", "--port", str(port), timeout=120)
    assert proc.returncode == 2
    assert "without API keys" in proc.stderr
    assert f"cannot listen on 0.0.0.0:{port}" in error_line(proc) and "--port" in error_line(proc)


@pytest.mark.parametrize("args, env, words", [
    (["--threshold", "0.5"], {}, "--threshold only apply when routing"),
    (["--api-key-file", "/nonexistent/keys.txt"], {}, "cannot read the API key file"),
    ([], {"EDGEKIT_API_KEYS": "good-key-123 bäd"}, "API key number 2"),
])
def test_cli_errors_are_one_line_and_exit_2(cli, smollm2_gguf, args, env, words):
    from tests.conftest import error_line

    proc = cli("serve", smollm2_gguf, "--port", "0", *args, env=env, timeout=120)
    assert proc.returncode == 2 and words in error_line(proc)
    assert "bäd" not in proc.stderr and "good-key-123" not in proc.stderr


def test_a_missing_server_dependency_names_the_extra(monkeypatch):
    import sys

    import edgekit.serve
    from edgekit.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match=r"prometheus-client .*pip install 'edgekit\[server\]'"):
        edgekit.serve.require_server()


def test_the_listening_socket_is_tcp_so_answers_are_not_held_by_nagle():
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; a proto-0 socket made every
    answer wait for the client's delayed ACK (about 40 ms a request)."""
    import asyncio

    from edgekit.serve.server import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP

        async def accepted_nodelay() -> int:
            got = asyncio.get_running_loop().create_future()

            async def on_conn(reader, writer):
                got.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                writer.close()

            server = await asyncio.start_server(on_conn, sock=sock)
            reader, writer = await asyncio.open_connection(*sock.getsockname())
            value = await asyncio.wait_for(got, 30)
            writer.close()
            server.close()
            return value

        assert asyncio.run(accepted_nodelay()) != 0
    finally:
        sock.close()


def test_the_threshold_edgekit_calibrate_wrote_applies(serve_cli, smollm2_gguf, llama_server, tmp_path):
    """As in edgekit run: edgekit.toml's remote and [policy] threshold (what calibrate writes) drive the router."""
    from edgekit.router.config import update_config

    config = tmp_path / "edgekit.toml"
    update_config(config, "remote", {"url": llama_server.url, "model": "smollm2", "api_key_env": KEY_ENV})
    update_config(config, "policy", {"threshold": 0.999, "first_k": 4})  # the way edgekit calibrate saves its choice
    sp = serve_cli(smollm2_gguf, "--config", config, "--threads", "1")
    r = httpx.post(sp.base + "/chat/completions", json={"messages": QUESTION, "max_tokens": 6}, timeout=120)
    assert r.status_code == 200
    assert (r.headers["x-edgekit-tier"], r.headers["x-edgekit-trigger"]) == ("remote", "low_confidence")
    assert r.json()["edgekit"]["threshold"] == 0.999 and "< 0.999" in r.json()["edgekit"]["reason"]
    assert "< 0.999" in sp.log.read_text()  # the startup line names the policy in force
    assert sp.stop() == 0
