"""Load: 200 concurrent chat requests on loopback against ``edgekit serve`` in its own process.

None may be lost: each gets an answer or a 503 with Retry-After, and each 503'd request
succeeds when retried within the bound. The queue bound holds while the load runs (read
from /metrics, scraped throughout) and the server's memory stays flat. No timings are asserted.
"""

from __future__ import annotations

import asyncio

import httpx
import openai

from tests.serve.conftest import CLIENT_KEY, metrics_of, total

MAX_QUEUE = 8
REPLICAS = 2
N = 200
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_200_concurrent_chats_none_lost_queue_bounded_memory_flat(serve_cli, smollm2_gguf):
    sp = serve_cli(smollm2_gguf, "--threads", "1", "--replicas", str(REPLICAS), "--max-queue", str(MAX_QUEUE), "--no-access-log",
                   "--alias", "smol",
                   env={"EDGEKIT_API_KEYS": CLIENT_KEY})
    c = openai.AsyncOpenAI(base_url=sp.base, api_key=CLIENT_KEY, max_retries=0, timeout=300)

    async def ask(i: int):
        try:
            r = await c.chat.completions.create(model="smol", messages=CHAT, max_tokens=1, user=f"client-{i}")
            return "ok", r
        except openai.APIStatusError as exc:
            return exc.status_code, exc.response.headers.get("retry-after")

    async def scrape(stop: asyncio.Event, seen: list):
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as h:
            while not stop.is_set():
                text = (await h.get(sp.url + "/metrics", timeout=60)).text
                seen.append(_gauges(text))
                await asyncio.sleep(0.1)

    async def main():
        for _ in range(3):  # warm up: the model's first call, the lazily built parts of the app
            assert (await ask(-1))[0] == "ok"
        rss_before = sp.rss_bytes()
        stop, seen = asyncio.Event(), []
        scraper = asyncio.create_task(scrape(stop, seen))
        first = await asyncio.gather(*(ask(i) for i in range(N)))
        rejected = [i for i, (status, _) in enumerate(first) if status != "ok"]
        gate = asyncio.Semaphore(MAX_QUEUE)  # at most MAX_QUEUE at once: every retry fits (REPLICAS slots + the line)

        async def retry(i):
            async with gate:
                return await ask(i)

        second = await asyncio.gather(*(retry(i) for i in rejected))
        stop.set()
        await scraper
        await c.close()
        return first, rejected, second, seen, rss_before

    first, rejected, second, seen, rss_before = asyncio.run(main())
    statuses = [status for status, _ in first]
    assert set(statuses) <= {"ok", 503}, statuses  # nothing else: no 500, no dropped connection
    assert rejected, "the load never filled the queue: nothing was tested"
    for i in rejected:
        assert int(first[i][1]) >= 1  # every 503 says when to come back
    assert [status for status, _ in second] == ["ok"] * len(rejected)  # and that retry is answered
    answers = [r for status, r in first + second if status == "ok"]
    assert len(answers) == N and all(r.choices[0].message.content is not None for r in answers)
    assert all(r.model_extra["edgekit"]["tier"] == "local" for r in answers)

    assert seen and all(depth <= MAX_QUEUE and busy <= REPLICAS for depth, busy in seen)
    assert max(busy for _, busy in seen) == REPLICAS  # --replicas: both models answered at once
    m = metrics_of(sp.url)
    assert total(m, "edgekit_queue_depth_peak", lane="local") <= MAX_QUEUE
    assert total(m, "edgekit_requests_total", endpoint="chat", outcome="ok") == N + 3
    assert total(m, "edgekit_requests_total", endpoint="chat", outcome="rejected") == len(rejected)
    assert total(m, "edgekit_requests_total", outcome="error") == 0
    growth = sp.rss_bytes() - rss_before
    assert growth < 100 * 2**20, f"the server grew by {growth / 2**20:.0f} MB over {N + len(rejected)} requests"
    assert sp.stop() == 0


def _gauges(text: str) -> tuple[float, float]:
    from prometheus_client.parser import text_string_to_metric_families

    depth = busy = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("lane") == "local" and s.name == "edgekit_queue_depth":
                depth = s.value
            if s.labels.get("lane") == "local" and s.name == "edgekit_busy_slots":
                busy = s.value
    return depth, busy
