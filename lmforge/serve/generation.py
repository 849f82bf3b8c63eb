"""The playground's generation: one engine per checkpoint in memory, a bounded number of
generations at once, and each token streamed with the model's probability and its top-5.

Requests beyond ``max_running`` wait their turn (at most ``max_waiting`` of them; more get 429).
Each token is computed in a worker thread on demand, so when the browser tab closes and the
response is cancelled, no further token is computed.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from lmforge.errors import LmforgeError
from lmforge.rundir import RunDir

MAX_PROMPT_CHARS = 8000
MAX_SAMPLES = 8
# Seeds are sent back and stepped by the page: at most 2**53 - 1, the largest integer JavaScript holds exactly.
MAX_SEED = 2**53 - 1 - MAX_SAMPLES
# The few-shot prompt: examples wanted and the least that shows a pattern, the opening words
# tried per example (longest first), documents looked at, the longest title taken, and the least
# room left for the continuation when the asked length does not fit.
FEW_SHOT_EXAMPLES = 3
MIN_FEW_SHOT = 2
FEW_SHOT_WORDS = (24, 16, 12, 8, 6, 4, 3, 2, 1)
FEW_SHOT_CANDIDATES = 200
MAX_TITLE_CHARS = 60
MIN_CONTINUATION = 2


class Busy(LmforgeError):
    """Too many generations are waiting (HTTP 429)."""


@dataclass(frozen=True)
class Settings:
    prompt: str
    max_tokens: int = 64
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 1.0
    seed: int | None = None
    n: int = 1


@dataclass
class LoadedModel:
    engine: object
    tokenizer: object
    seq_len: int
    step: int


class ModelCache:
    """At most ``size`` models in memory, one per checkpoint, the least recently used dropped first."""

    def __init__(self, size: int = 2):
        self.size = size
        self._models: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, rd: RunDir) -> LoadedModel:
        from lmforge.sample.engine import Engine, load_model, resolve_checkpoint

        if not rd.inside(rd.checkpoints).is_dir():
            raise LmforgeError(f"{rd.root.name} has no checkpoint yet; make one with `lmforge run {rd.config} --until train`")
        step_dir = rd.inside(resolve_checkpoint(rd.checkpoints))
        for name in ("model.json", "model.safetensors"):
            rd.inside(step_dir / name)
        key = (str(step_dir.resolve()), (step_dir / "model.safetensors").stat().st_mtime_ns)
        with self._lock:  # one load at a time: two tabs asking for the same model load it once
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model, _ = load_model(step_dir, with_tokenizer=False)
            tok = _tokenizer_of(rd, step_dir, model.config.vocab_size)
            loaded = LoadedModel(Engine(model, stop_ids={tok.bos_id}), tok, model.config.seq_len,
                                 _step_number(step_dir))
            self._models[key] = loaded
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return loaded


def _tokenizer_of(rd, step_dir: Path, vocab_size: int):
    """The tokenizer model.json names when it is inside the runs folder, else the run's tokenizer/;
    it must have the model's vocabulary size (else the model's ids are not its tokens)."""
    from lmforge.sample.engine import read_checkpoint_config
    from lmforge.tokenizer.bpe import Tokenizer

    recorded = read_checkpoint_config(step_dir)[0].get("tokenizer")
    candidates = [Path(recorded)] if isinstance(recorded, str) and recorded else []
    candidates = [c for c in candidates if c.is_dir() and c.resolve().is_relative_to(rd.fence or c.resolve())]
    folder = rd.inside(candidates[0] if candidates else rd.tokenizer)
    if not (folder / "tokenizer.json").is_file():
        raise LmforgeError(f"{rd.root.name} has a checkpoint but no tokenizer/; make it with `lmforge run {rd.config} --until tokenizer`")
    tok = Tokenizer.load(rd.inside(folder / "tokenizer.json").parent)
    if tok.vocab_size != vocab_size:
        raise LmforgeError(f"{rd.root.name}: the tokenizer has {tok.vocab_size} tokens and the checkpoint's model "
                           f"{vocab_size}: they are not of one run; train again with {rd.remake('train')}")
    return tok


def _step_number(step_dir: Path) -> int:
    tail = step_dir.name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def check_settings(s: Settings, seq_len: int | None) -> list[str]:
    """Problems with the settings; ``seq_len`` None skips the check that needs the model."""
    problems = []
    if len(s.prompt) > MAX_PROMPT_CHARS:
        problems.append(f"prompt is {len(s.prompt)} characters; at most {MAX_PROMPT_CHARS}")
    if not is_utf8(s.prompt):
        problems.append("prompt has a lone UTF-16 surrogate (e.g. \\ud800), which is not text; send whole characters")
    if s.max_tokens < 1 or (seq_len is not None and s.max_tokens > seq_len):
        problems.append(f"max_tokens must be 1..{seq_len or 'seq_len'} (at most the model's context length)")
    if not 1 <= s.n <= MAX_SAMPLES:
        problems.append(f"n must be 1..{MAX_SAMPLES}")
    if not 0 <= s.temperature <= 5:
        problems.append("temperature must be 0..5 (0 = greedy)")
    if s.top_k < 0:
        problems.append("top_k must be >= 0 (0 = no limit)")
    if not 0 < s.top_p <= 1:
        problems.append("top_p must be in (0, 1]")
    if s.seed is not None and not 0 <= s.seed <= MAX_SEED:
        problems.append(f"seed must be an integer 0..{MAX_SEED} (what a browser holds exactly), or null for a random one")
    return problems


def is_utf8(text: str) -> bool:
    """False for a string holding a lone surrogate (JSON's "\\ud800"), which has no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class GenerationQueue:
    def __init__(self, max_running: int = 2, max_waiting: int = 8):
        self.max_running, self.max_waiting = max_running, max_waiting
        self.running = self.waiting = self.tokens = 0
        self._sem: asyncio.Semaphore | None = None

    def check_room(self) -> None:
        """Refuse (429) before the response starts when the queue is full."""
        if self.waiting >= self.max_waiting:
            raise Busy(f"{self.waiting} generations are waiting already; try again in a moment")

    async def stream(self, loaded: LoadedModel, s: Settings) -> AsyncIterator[dict]:
        """Events: start (per sample, with its seed), token, end (per sample), done."""
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_running)
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            seed = s.seed if s.seed is not None else random.randrange(2**31)
            tok = loaded.tokenizer
            prompt_ids = [tok.bos_id, *tok.encode(s.prompt)]
            for i in range(s.n):
                async for event in self._sample(loaded, s, prompt_ids, i, seed + i):
                    yield event
            yield {"type": "done"}
        finally:
            self.running -= 1
            self._sem.release()

    async def _sample(self, loaded: LoadedModel, s: Settings, prompt_ids, index: int, seed: int):
        tok = loaded.tokenizer
        yield {"type": "start", "sample": index, "seed": seed, "prompt_tokens": len(prompt_ids), "step": loaded.step}
        choices = loaded.engine.generate_choices(prompt_ids, s.max_tokens, s.temperature, s.top_k, s.top_p, seed)
        busy = threading.Lock()  # held while a worker thread computes a token

        def step():
            with busy:
                return next(choices, None)

        decoder, count = tok.stream_decoder(), 0
        try:
            while (choice := await asyncio.to_thread(step)) is not None:
                count += 1
                self.tokens += 1
                yield {"type": "token", "sample": index, "id": choice.id, "text": decoder.feed(choice.id),
                       "token": token_text(tok, choice.id), "prob": round(choice.prob, 6),
                       "top": [{"id": t, "token": token_text(tok, t), "prob": round(p, 6)} for t, p in choice.top]}
        finally:
            _close_after(choices, busy)
        yield {"type": "end", "sample": index, "text": decoder.flush(), "tokens": count,
               "reason": "length" if count >= s.max_tokens else "end of text"}


def _close_after(generator, busy: threading.Lock) -> None:
    """Close the engine's generator; when the response was cancelled (closed tab) while a thread
    still computes a token, close it once that token is done, from another thread."""
    if busy.acquire(blocking=False):
        try:
            generator.close()
        finally:
            busy.release()
        return

    def close():
        with busy:
            generator.close()

    threading.Thread(target=close, daemon=True).start()


def token_text(tok, token_id: int) -> str:
    """A token as `lmforge tokenizer show` prints it: UTF-8 text, or hex escapes for part of a character."""
    raw = tok.token_bytes(token_id)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"\\x{b:02x}" for b in raw)


def few_shot_prompt(rd: RunDir, seq_len: int, tok, max_tokens: int) -> dict:
    """A prompt that shows in-context learning with the run's own documents: lines of "title: the
    document's opening words", then a title left open for the model to continue the pattern.

    The documents are the first ones of docs/ (one row group read). Short titles go first and the
    openings are cut to whole words so that at least two examples fit even a small context; the
    prompt leaves ``max_tokens`` of the context for the continuation when it can, else as much as
    two examples allow (the answer's ``max_tokens`` says how much).
    """
    shots = _shots(rd)
    if len(shots) < MIN_FEW_SHOT + 1:
        raise LmforgeError(f"{rd.root.name}: fewer than {MIN_FEW_SHOT + 1} documents with a title line and a body; "
                           "a few-shot prompt needs more documents")
    shots.sort(key=lambda s: len(tok.encode(s[0])))  # stable: the docs' order among equal lengths
    room = seq_len - 1  # the generation puts BOS first
    best = None
    for count in range(min(FEW_SHOT_EXAMPLES, len(shots) - 1), MIN_FEW_SHOT - 1, -1):
        for words in FEW_SHOT_WORDS:
            prompt = _few_shot_text(shots[:count], shots[count][0], words)
            used = len(tok.encode(prompt))
            if used + min(max_tokens, room) <= room:
                return {"prompt": prompt, "examples": count, "tokens": used, "max_tokens": min(max_tokens, room - used)}
            if count == MIN_FEW_SHOT and used + MIN_CONTINUATION <= room:
                if best is None or used < best[2]:  # fits only with a shorter continuation: leave the most room
                    best = (prompt, count, used)
    if best is None:
        raise LmforgeError(f"{rd.root.name}: the model's context ({seq_len} tokens) is too short for a few-shot prompt "
                           f"of {MIN_FEW_SHOT} examples from this run's documents")
    prompt, count, used = best
    return {"prompt": prompt, "examples": count, "tokens": used, "max_tokens": room - used}


def _shots(rd: RunDir) -> list[tuple[str, list[str]]]:
    """(title, words of the body) of the first documents whose first line is a short title."""
    import pyarrow.parquet as pq

    from lmforge.serve.documents import parquet_errors

    files = rd.files(rd.docs, "*.parquet")
    if not files:
        raise LmforgeError(f"{rd.root.name} has no documents yet; make them with `lmforge run {rd.config} --until clean`")
    with parquet_errors(files[0]):
        pf = pq.ParquetFile(files[0])
        rows = pf.read_row_group(0, columns=["text"]).column(0).to_pylist() if pf.metadata.num_row_groups else []
    shots = []
    for text in rows[:FEW_SHOT_CANDIDATES]:
        lines = [ln.strip() for ln in (text if isinstance(text, str) else "").splitlines() if ln.strip()]
        if len(lines) >= 2 and len(lines[0]) <= MAX_TITLE_CHARS:
            shots.append((lines[0], " ".join(lines[1:]).split()[:max(FEW_SHOT_WORDS)]))
    return shots


def _few_shot_text(examples, query: str, words: int) -> str:
    return "".join(f"{title}: {' '.join(body[:words])}\n" for title, body in examples) + f"{query}:"
