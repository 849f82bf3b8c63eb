"""Generation under load: a bounded number at once, a bounded queue, and a closed connection stops
its generation (a slow stand-in engine makes the timing visible)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from lmforge.sample.engine import TokenChoice
from lmforge.serve.generation import Busy, GenerationQueue, LoadedModel, Settings


class SlowEngine:
    """Yields token 65 every ``delay`` seconds; counts the tokens computed and the generators open."""

    def __init__(self, delay: float):
        self.delay, self.computed, self.open = delay, 0, 0
        self.lock = threading.Lock()

    def generate_choices(self, prompt_ids, max_new_tokens, *args, **kwargs):
        with self.lock:
            self.open += 1
        try:
            for _ in range(max_new_tokens):
                time.sleep(self.delay)
                with self.lock:
                    self.computed += 1
                yield TokenChoice(65, 0.5, ((65, 0.5), (66, 0.25)))
        finally:
            with self.lock:
                self.open -= 1


class ByteTokenizer:
    bos_id = 0

    def encode(self, text):
        return list(text.encode())

    def token_bytes(self, i):
        return bytes([i])

    def stream_decoder(self):
        from lmforge.tokenizer.bpe import StreamDecoder

        return StreamDecoder(self)


def run_async(make_coroutine):
    """asyncio.run in a thread of its own (Playwright's sync API may hold this thread's loop)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(make_coroutine())))
    thread.start()
    thread.join(60)
    return result[0]


def loaded(delay=0.0) -> LoadedModel:
    return LoadedModel(SlowEngine(delay), ByteTokenizer(), seq_len=64, step=1)


def test_at_most_max_running_generate_at_once():
    queue, model = GenerationQueue(max_running=2, max_waiting=8), loaded(0.01)
    peak = 0

    async def one():
        nonlocal peak
        async for _ in queue.stream(model, Settings("x", max_tokens=5)):
            peak = max(peak, queue.running)
        return True

    async def main():
        return await asyncio.gather(*(one() for _ in range(5)))

    assert run_async(main) == [True] * 5
    assert peak == 2 and queue.running == queue.waiting == 0 and model.engine.computed == 25


def test_a_full_queue_refuses_with_busy():
    queue = GenerationQueue(max_running=1, max_waiting=1)
    queue.waiting = 1
    with pytest.raises(Busy, match="waiting"):
        queue.check_room()


def test_events_of_a_sample():
    async def collect():
        return [e async for e in GenerationQueue().stream(loaded(), Settings("hi", max_tokens=3, n=2, seed=4))]

    events = run_async(collect)
    assert [e["type"] for e in events] == ["start", "token", "token", "token", "end"] * 2 + ["done"]
    assert [e["seed"] for e in events if e["type"] == "start"] == [4, 5]
    assert events[1]["text"] == "A" and events[1]["top"][1] == {"id": 66, "token": "B", "prob": 0.25}


def test_a_closed_connection_stops_its_generation(runs_root):
    import httpx

    from lmf_serve_server import ServerThread
    from lmforge.serve.app import create_app

    app = create_app(runs_root)
    model = loaded(0.02)
    app.state.models.get = lambda rd: model  # the slow stand-in: 64 tokens x 8 samples would take 10 s
    with ServerThread(app) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            with client.stream("POST", "/api/runs/tiny/generate", json={"prompt": "x", "max_tokens": 64, "n": 8}) as r:
                for line in r.iter_lines():
                    if '"token"' in line:
                        break
            deadline = time.time() + 3
            while model.engine.open and time.time() < deadline:
                time.sleep(0.02)
            stopped_at = model.engine.computed
            time.sleep(0.3)
            status = client.get("/api/status").json()
    assert model.engine.open == 0, "the generator was not closed"
    assert model.engine.computed == stopped_at < 64, "tokens were computed after the tab closed"
    assert status["generations_running"] == 0 and status["generations_waiting"] == 0
