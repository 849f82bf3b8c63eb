"""Text generation with a KV cache: ``Engine.generate()`` yields token ids one at a time.

    model, tok = load_model("runs/demo")             # a run dir (latest checkpoint) or a step dir
    engine = Engine(model, stop_ids={tok.bos_id})
    for token in engine.generate([tok.bos_id, *tok.encode("def ")], 64, temperature=0.8, top_k=50, seed=1):
        ...

The prompt is run once (prefill), then each new token costs one position, attending to the
cached keys and values (as nanochat's Engine).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch

from lmforge.errors import LmforgeError
from lmforge.sample.decode import Decoder

if TYPE_CHECKING:
    from lmforge.model.config import ModelConfig


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf the logits outside the top k and outside the nucleus of mass top_p.

    Nucleus (Holtzman et al. 2020): keep the smallest set of most likely tokens whose probability
    sums to at least top_p. E.g. probabilities [0.5, 0.3, 0.15, 0.05] with top_p = 0.8 keep the
    first two; with top_p = 0.81 the first three.
    """
    logits = logits.clone()
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = -float("inf")
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked above each one
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False  # always keep the most likely token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits[drop] = -float("inf")
    return logits


def next_token(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
               generator: torch.Generator | None) -> int:
    """Pick the next token from the last position's logits (1-D): greedy at temperature 0."""
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    return int(torch.multinomial(logits.softmax(dim=-1), 1, generator=generator))


@dataclass(frozen=True)
class TokenChoice:
    """A generated token: its id, the model's probability of it and the most likely alternatives
    as ``(id, probability)`` pairs, most likely first."""

    id: int
    prob: float | None = None
    top: tuple[tuple[int, float], ...] = ()

    @classmethod
    def of(cls, token: int, logits: torch.Tensor, alternatives: int) -> "TokenChoice":
        probs = logits.float().softmax(dim=-1)
        values, ids = torch.topk(probs, min(alternatives, probs.numel()))
        return cls(token, float(probs[token]), tuple(zip(ids.tolist(), values.tolist())))


class Engine:
    """Generation for one model; ``stop_ids`` end a continuation (the end-of-text token)."""

    def __init__(self, model, stop_ids: set[int] | None = None):
        self.model = model.eval()
        self.stop_ids = set(stop_ids or ())
        self.device = next(model.parameters()).device
        self.decoder = Decoder(self.model)

    @torch.inference_mode()
    def generate(self, prompt_ids: list[int], max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None, use_cache: bool = True) -> Iterator[int]:
        """Yield up to ``max_new_tokens`` ids after ``prompt_ids``; stop before a stop token.

        The same seed gives the same tokens. Beyond seq_len the context slides: without the cache
        every step sees the last seq_len tokens; with it, the cache is refilled with the last half
        of the window when it is full.
        """
        for choice in self._choices(prompt_ids, max_new_tokens, temperature, top_k, top_p, seed, use_cache, 0):
            yield choice.id

    @torch.inference_mode()
    def generate_choices(self, prompt_ids: list[int], max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
                         top_p: float = 1.0, seed: int | None = None, alternatives: int = 5) -> Iterator["TokenChoice"]:
        """As ``generate`` (the same seed gives the same ids), each token with how sure the model was.

        ``prob`` and ``top`` come from the model's own distribution (softmax of the logits, before
        temperature and filtering), so they say what the model believes, whatever the sampling.
        """
        yield from self._choices(prompt_ids, max_new_tokens, temperature, top_k, top_p, seed, True, alternatives)

    @torch.inference_mode()
    def generate_batch(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations of several prompts of equal length, decoded together.

        Each row is what ``generate(prompt, max_new_tokens, temperature=0)`` gives (cut before its
        first stop token), but one step computes every row with the same matrix products, which
        costs little more than one row. The whole context stays in the cache, so prompt length plus
        ``max_new_tokens`` must fit in seq_len.
        """
        lengths = {len(p) for p in prompts}
        if not prompts or lengths == {0} or len(lengths) > 1:
            raise LmforgeError(f"generate_batch needs prompts of one same length >= 1 (got lengths "
                               f"{sorted(lengths)}); pad or group them by length, or use generate() per prompt")
        length, seq_len = lengths.pop(), self.model.config.seq_len
        if length + max_new_tokens > seq_len:
            raise LmforgeError(f"{length} prompt tokens + {max_new_tokens} new ones exceed seq_len {seq_len}; "
                               "ask for fewer tokens or use generate(), whose context slides")
        if max_new_tokens < 1:
            return [[] for _ in prompts]
        self.decoder.refresh_if_changed()
        cache = self.model.new_kv_cache(len(prompts), length + max_new_tokens)
        logits = self.model(torch.tensor(prompts, device=self.device), kv_cache=cache, start_pos=0)[0][:, -1]
        out, stopped = [], torch.zeros(len(prompts), dtype=torch.bool, device=self.device)
        stop = torch.tensor(sorted(self.stop_ids), dtype=torch.long, device=self.device)
        for pos in range(length, length + max_new_tokens):
            tokens = logits.argmax(-1)
            out.append(tokens)
            if pos + 1 == length + max_new_tokens:
                break
            if self.stop_ids:  # all rows stopped: nothing more to decode
                stopped |= torch.isin(tokens, stop)
                if bool(stopped.all()):
                    break
            logits = self.decoder.step(tokens, cache, pos)
        rows = torch.stack(out, dim=1).tolist()
        return [_cut_at_stop(row, self.stop_ids) for row in rows]

    def _choices(self, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed, use_cache,
                 alternatives) -> Iterator["TokenChoice"]:
        if not prompt_ids:
            raise LmforgeError("empty prompt: give at least one token (e.g. the tokenizer's bos_id)")
        generator = None
        if temperature > 0:
            generator = torch.Generator(device=self.device)
            if seed is None:
                generator.seed()  # a fresh random seed, leaving torch's global RNG alone
            else:
                generator.manual_seed(seed)
        step = self._cached_steps if use_cache else self._uncached_steps
        ids = list(prompt_ids)
        for logits in step(ids, max_new_tokens):
            token = next_token(logits, temperature, top_k, top_p, generator)
            if token in self.stop_ids:
                return
            ids.append(token)
            yield TokenChoice.of(token, logits, alternatives) if alternatives else TokenChoice(token)

    def _uncached_steps(self, ids: list[int], count: int) -> Iterator[torch.Tensor]:
        """The reference: run the whole (cropped) context again for every token."""
        seq_len = self.model.config.seq_len
        for _ in range(count):
            context = torch.tensor([ids[-seq_len:]], device=self.device)
            yield self.model(context)[0][0, -1]

    def _cached_steps(self, ids: list[int], count: int) -> Iterator[torch.Tensor]:
        """Logits for each new position; ``ids`` grows by the caller's choice between yields."""
        seq_len = self.model.config.seq_len
        self.decoder.refresh_if_changed()
        cache, pos = None, 0
        for _ in range(count):
            if cache is None or pos >= seq_len:
                # (Re)fill: the whole prompt at first, the last half window when the cache is full.
                keep = ids[-seq_len:] if cache is None else ids[-max(1, seq_len // 2):]  # ids[-0:] is all
                cache = self.model.new_kv_cache(1, seq_len)
                logits = self.model(torch.tensor([keep], device=self.device), kv_cache=cache, start_pos=0)[0]
                pos = len(keep)
            else:
                logits = self.decoder.step(torch.tensor([ids[-1]], device=self.device), cache, pos)[:, None]
                pos += 1
            yield logits[0, -1]


def _cut_at_stop(row: list[int], stop_ids: set[int]) -> list[int]:
    for i, token in enumerate(row):
        if token in stop_ids:
            return row[:i]
    return row


def load_model(path: str | Path, device: str = "cpu", with_tokenizer: bool = True):
    """Load (model, tokenizer) from a step dir, a checkpoints dir, or a run dir (its latest checkpoint).

    The tokenizer is the one recorded in model.json, or the run's ``tokenizer/``; it is None when
    ``with_tokenizer`` is False. A checkpoint that cannot be what it says (model.json unreadable,
    model.safetensors truncated or of another model shape, weights not finite) is refused with
    one line naming the file.
    """
    _, model, tokenizer = load_checkpoint(path, device, with_tokenizer)
    return model, tokenizer


def load_checkpoint(path: str | Path, device: str = "cpu", with_tokenizer: bool = True):
    """(step dir, model, tokenizer), as :func:`load_model`. A run's latest checkpoint that its running
    training prunes while it is read (it keeps the newest ``keep_checkpoints``) is followed to the newer one."""
    for _ in range(5):
        step_dir = resolve_checkpoint(path)
        try:
            return step_dir, *_load_step(step_dir, device, with_tokenizer)
        except LmforgeError:
            if step_dir.exists():
                raise
            if step_dir.resolve() == Path(path).resolve():
                break
    raise LmforgeError(f"{step_dir} was removed while it was read (a training running on this run keeps only "
                       "its newest keep_checkpoints); try again, or copy a checkpoints/step_N folder elsewhere "
                       "and give that")


def _load_step(step_dir: Path, device: str, with_tokenizer: bool):
    from lmforge.model.gpt import GPT

    info, config = read_checkpoint_config(step_dir)
    check_weights_file(step_dir, config)
    model = GPT(config).to(device)
    _load_weights(step_dir, model)
    model.eval()
    check_finite(step_dir, model)
    tokenizer = load_tokenizer(step_dir, info) if with_tokenizer else None
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise LmforgeError(f"{step_dir}: its tokenizer ({tokenizer_dir(step_dir, info)}) has {tokenizer.vocab_size} "
                           f"tokens, the model {config.vocab_size}: another model's tokenizer; put the path of the "
                           "tokenizer it was trained with in model.json")
    return model, tokenizer


_FIX = "use another checkpoints/step_N folder, or train again"


def read_checkpoint_config(step_dir: Path) -> tuple[dict, ModelConfig]:
    """model.json of a checkpoint and the ModelConfig it holds, checked field by field."""
    from dataclasses import fields

    from lmforge.model.config import ModelConfig
    from lmforge.train.checkpoint import read_model_json

    where = Path(step_dir) / "model.json"
    try:
        info = read_model_json(step_dir)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise LmforgeError(f"{where}: not valid JSON ({exc}); {_FIX}") from None
    settings = info.get("model") if isinstance(info, dict) else None
    if not isinstance(settings, dict):
        raise LmforgeError(f"{where}: no \"model\" settings in it; {_FIX}")
    kinds = {f.name: f.type for f in fields(ModelConfig)}
    problems = [f"{k}: unknown setting" for k in settings if k not in kinds]
    problems += [f"{k} = {v!r} is not {'an' if kinds[k] == 'int' else 'a'} {kinds[k]}"
                 for k, v in settings.items() if k in kinds and not _is_kind(v, kinds[k])]
    if not problems:
        config = ModelConfig(**settings)
        problems = config.validate() + (["vocab_size: must be at least 1"] if config.vocab_size < 1 else [])
    if problems:
        raise LmforgeError(f"{where}: not a model this code can build ({'; '.join(problems)}); {_FIX}")
    return info, config


def _is_kind(value, kind: str) -> bool:
    import math

    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return True


def check_weights_file(step_dir: Path, config) -> None:
    """model.safetensors is whole and holds tensors of the shapes ``config`` gives (checked from
    its header and a model built on the meta device, before any memory is taken)."""
    from safetensors import safe_open

    from lmforge.model.gpt import GPT

    where = Path(step_dir) / "model.safetensors"
    try:
        with safe_open(str(where), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors' own error type differs across versions
        raise LmforgeError(f"{where}: not a readable safetensors file ({exc}); it may be truncated "
                           f"or overwritten; {_FIX}") from None
    with torch.device("meta"):
        state = GPT(config).state_dict(keep_vars=True)
    expected = {k: tuple(v.shape) for k, v in state.items()}
    wrong = [f"{k} {shapes[k]} where model.json gives {expected[k]}" for k in shapes if k in expected
             and shapes[k] != expected[k]]
    unknown = sorted(set(shapes) - set(expected))
    stored = {id(state[k]) for k in shapes if k in state}  # a tied head is stored once, as the embedding
    missing = [k for k, v in state.items() if k not in shapes and id(v) not in stored]
    if wrong or unknown or missing:
        if wrong:
            detail = "; ".join(wrong[:2])
        elif unknown:
            detail = f"unexpected tensors {', '.join(unknown[:3])}"
        else:
            detail = f"missing tensors {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
        raise LmforgeError(f"{where}: weights of another model than its model.json describes ({detail}); "
                           "put the model.json of the run that trained these weights beside them, or use "
                           "another checkpoint")


def _load_weights(step_dir: Path, model) -> None:
    from lmforge.train.checkpoint import load_weights

    try:
        load_weights(step_dir, model)
    except (RuntimeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LmforgeError(f"{Path(step_dir) / 'model.safetensors'}: cannot load the weights ({first}); "
                           f"{_FIX}") from None


def check_finite(step_dir: Path, model) -> None:
    """Refuse weights holding NaN or infinity (a diverged training saved them): they sample garbage."""
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise LmforgeError(f"{Path(step_dir) / 'model.safetensors'}: non-finite weights (NaN or inf) in "
                           f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}: the training diverged "
                           "before this step; use an earlier checkpoints/step_N, or train again with a lower lr")


def resolve_checkpoint(path: str | Path) -> Path:
    """A step dir from a step dir, a checkpoints dir or a run dir."""
    from lmforge.train.checkpoint import latest_checkpoint

    path = Path(path)
    if not path.exists():
        raise LmforgeError(f"{path}: no such checkpoint or run directory")
    if (path / "model.json").exists() or (path / "model.safetensors").exists():
        return path
    for folder in (path / "checkpoints", path):
        found = latest_checkpoint(folder) if folder.is_dir() else None
        if found:
            return found
    raise LmforgeError(f"{path}: no complete checkpoint here (expected model.json and model.safetensors, "
                       "or checkpoints/step_N/); train first with `lmforge train CONFIG`")


def load_tokenizer(step_dir: Path, info: dict):
    from lmforge.tokenizer.bpe import Tokenizer

    return Tokenizer.load(tokenizer_dir(step_dir, info))


def tokenizer_dir(step_dir: Path, info: dict) -> Path:
    """The folder of a checkpoint's tokenizer: the one model.json records, or its run's ``tokenizer/``."""
    recorded = info.get("tokenizer")
    candidates = [Path(recorded)] if isinstance(recorded, str) and recorded else []
    candidates.append(Path(step_dir).resolve().parent.parent / "tokenizer")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise LmforgeError(f"{step_dir}: tokenizer not found (looked in {', '.join(map(str, candidates))}); "
                       "copy the run's tokenizer/ folder back or fix the path in model.json")
