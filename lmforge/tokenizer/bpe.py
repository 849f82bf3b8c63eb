"""Byte-level BPE: the tokenizer file format, encode/decode through tiktoken, and the HF export.

A tokenizer is a table of *mergeable ranks*: byte strings -> id, where ids 0..255 are the
single bytes and every later id is a merge learned in training (lower id = learned earlier =
applied first). Encoding splits the text with a regex (the pre-tokenization pattern) and runs
BPE inside each piece, exactly as tiktoken does; special tokens take the ids after the merges.

Example with the ranks {b"a": 97, b"b": 98, ..., b"aa": 256, b"ab": 257, b"aaab": 258}:
"aaab" -> [a, a, a, b] -> the lowest-ranked adjacent pair is (a, a) = 256 -> [aa, a, b] ->
(a, b) = 257 -> [aa, ab] -> (aa, ab) = 258 -> [258].

Saved as ``tokenizer.json`` (our own, versioned) plus ``hf/tokenizer.json`` that
``transformers.PreTrainedTokenizerFast(tokenizer_file=...)`` loads and that gives the same ids.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Collection, Iterable, Literal

from lmforge.errors import LmforgeError
from lmforge.rundir import write_json_atomic

FORMAT = "lmforge-bpe"
FORMAT_VERSION = 1
TOKENIZER_FILE = "tokenizer.json"
HF_DIR = "hf"

# The split patterns of tiktoken_ext/openai_public.py (r50k = GPT-2, cl100k = GPT-4, o200k = GPT-4o),
# with cl100k's possessive ``\p{N}{1,3}+`` written ``\p{N}{1,3}`` (same matches): HF's Oniguruma
# reads ``{1,3}+`` as "one or more groups of 1-3", which would merge whole numbers.
PATTERNS = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "gpt4": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k": "|".join([
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]),
}
# Digit groups of the named patterns; split_digits turns each into a single digit, as
# Llama and PaLM do, so that numbers are never merged across digits.
_DIGIT_GROUPS = (r" ?\p{N}++", r"\p{N}{1,3}")


def resolve_pattern(pattern: str, split_digits: bool = False) -> str:
    """A pattern name (gpt2, gpt4, o200k) or a regex -> the regex, checked to compile."""
    import regex

    pat = PATTERNS.get(pattern, pattern)
    if split_digits:
        for group in _DIGIT_GROUPS:
            pat = pat.replace(group, r"\p{N}")
        if r"\p{N}|" not in pat and not pat.startswith(r"\p{N}"):
            pat = r"\p{N}|" + pat  # a custom regex: a digit alone wins at any digit
    try:
        regex.compile(pat)
    except regex.error as exc:
        raise LmforgeError(f"tokenizer pattern {pattern!r} is not a valid regex ({exc}); "
                           f"use one of {', '.join(PATTERNS)} or fix the regex") from None
    return pat


class Tokenizer:
    """A trained byte-level BPE tokenizer (load with :meth:`Tokenizer.load`)."""

    def __init__(self, mergeable_ranks: dict[bytes, int], pattern: str, special_tokens: dict[str, int],
                 meta: dict | None = None):
        self.mergeable_ranks = mergeable_ranks
        self.pattern = pattern
        self.special_tokens = dict(special_tokens)
        self.meta = dict(meta or {})
        self._id_to_bytes = {i: b for b, i in mergeable_ranks.items()}
        self._id_to_bytes.update({i: s.encode("utf-8") for s, i in special_tokens.items()})
        self._check_ids()

    def _check_ids(self) -> None:
        n = len(self.mergeable_ranks)
        if sorted(self.mergeable_ranks.values()) != list(range(n)):
            raise LmforgeError("tokenizer ranks are not the ids 0..N-1; the tokenizer file is corrupt, retrain it")
        if sorted(self.special_tokens.values()) != list(range(n, n + len(self.special_tokens))):
            raise LmforgeError("special token ids must follow the merges; the tokenizer file is corrupt, retrain it")

    # -- properties ------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.mergeable_ranks) + len(self.special_tokens)

    @property
    def bos_id(self) -> int:
        """Id of the first special token (``<|endoftext|>``), which begins every document."""
        return min(self.special_tokens.values())

    @cached_property
    def encoding(self):
        """The tiktoken ``Encoding`` built from our ranks (tiktoken's Rust BPE does the work)."""
        import tiktoken

        return tiktoken.Encoding(self.meta.get("name", "lmforge"), pat_str=self.pattern,
                                 mergeable_ranks=self.mergeable_ranks, special_tokens=self.special_tokens)

    # -- encode / decode -------------------------------------------------------------------
    def encode(self, text: str, allowed_special: Literal["all"] | Collection[str] = ()) -> list[int]:
        """Text -> ids. Special-token text is ordinary text unless named in ``allowed_special``."""
        if not allowed_special:
            return self.encoding.encode_ordinary(text)
        return self.encoding.encode(text, allowed_special=allowed_special, disallowed_special=())

    def encode_batch(self, texts: list[str], allowed_special: Literal["all"] | Collection[str] = (),
                     num_threads: int = 8) -> list[list[int]]:
        if not allowed_special:
            return self.encoding.encode_ordinary_batch(texts, num_threads=num_threads)
        return self.encoding.encode_batch(texts, num_threads=num_threads, allowed_special=allowed_special,
                                          disallowed_special=())

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        try:
            return b"".join(self._id_to_bytes[int(i)] for i in ids)  # int(): numpy/torch ids too
        except KeyError as exc:
            raise LmforgeError(f"token id {exc.args[0]} is outside the vocabulary (0..{self.vocab_size - 1})") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; exact for any ids that came from ``encode``; invalid UTF-8 becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self.decode_bytes([token_id])

    def stream_decoder(self) -> "StreamDecoder":
        return StreamDecoder(self)

    # -- save / load -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        ranks = sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1])
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "vocab_size": self.vocab_size,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            **{k: v for k, v in self.meta.items() if k not in ("format", "version")},
            # tiktoken's file format: base64 of the token bytes -> rank.
            "mergeable_ranks": {base64.b64encode(b).decode("ascii"): r for b, r in ranks},
        }

    def save(self, directory: str | os.PathLike, hf_export: bool = True) -> Path:
        directory = Path(directory)
        write_json_atomic(directory / TOKENIZER_FILE, self.to_dict())
        if hf_export:
            write_json_atomic(directory / HF_DIR / TOKENIZER_FILE, hf_tokenizer_json(self))
            write_json_atomic(directory / HF_DIR / "tokenizer_config.json", hf_tokenizer_config(self))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer":
        path = Path(directory)
        path = path / TOKENIZER_FILE if path.is_dir() else path
        if not path.is_file():
            raise LmforgeError(f"{path}: no tokenizer here (train one: `lmforge run CONFIG --only tokenizer`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LmforgeError(f"{path}: not a valid tokenizer file ({exc}); retrain the tokenizer") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, origin: str = "<dict>") -> "Tokenizer":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LmforgeError(f"{origin}: not an lmforge tokenizer (format {data.get('format') if isinstance(data, dict) else None!r}, "
                               f"expected {FORMAT!r}); an HF tokenizer.json lives in the hf/ subfolder")
        if data.get("version") != FORMAT_VERSION:
            raise LmforgeError(f"{origin}: tokenizer format version {data.get('version')!r} is not supported "
                               f"(this lmforge reads version {FORMAT_VERSION}); retrain the tokenizer or upgrade lmforge")
        try:
            # binascii, not base64.b64decode: the same strict check at half the time (every worker loads it)
            ranks = {binascii.a2b_base64(b, strict_mode=True): r for b, r in data["mergeable_ranks"].items()}
            pattern, specials = data["pattern"], data["special_tokens"]
        except (KeyError, AttributeError, ValueError, TypeError) as exc:
            raise LmforgeError(f"{origin}: damaged tokenizer file ({type(exc).__name__}: {exc}); retrain the tokenizer") from None
        meta = {k: v for k, v in data.items() if k not in ("mergeable_ranks", "pattern", "special_tokens", "vocab_size")}
        return cls(ranks, pattern, specials, meta)


class StreamDecoder:
    """Decode ids one at a time, emitting text only once its bytes form whole UTF-8 characters.

    A Korean syllable is 3 bytes and may span two tokens: ``feed`` of the first returns "" and
    ``feed`` of the second returns the syllable. ``flush`` emits what is left (U+FFFD for an
    incomplete character).
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        return self._decoder.decode(self.tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text


# -- HF export -----------------------------------------------------------------------------
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, used by HF's ByteLevel vocabularies."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def hf_vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[list[str]]]:
    """Derive HF BPE vocab and merges from tiktoken ranks, as transformers' TikTokenConverter does:
    every split of a token into two known tokens is a merge, ordered by the merged token's rank
    (then by the ranks of the two halves), so that HF applies them in tiktoken's order."""
    table = bytes_to_unicode()

    def to_str(b: bytes) -> str:
        return "".join(table[x] for x in b)

    merges = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    vocab = {to_str(b): r for b, r in ranks.items()}
    return vocab, [[to_str(m[3]), to_str(m[4])] for m in merges]


def hf_tokenizer_config(tok: Tokenizer) -> dict:
    """``tokenizer_config.json``, so that ``AutoTokenizer.from_pretrained(hf_dir)`` works too; the
    first special token begins and ends documents, as in GPT-2."""
    first = min(tok.special_tokens, key=tok.special_tokens.get)
    return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": first, "eos_token": first,
            "add_bos_token": False, "clean_up_tokenization_spaces": False}


def hf_tokenizer_json(tok: Tokenizer) -> dict:
    """The HF ``tokenizer.json``: Split(our regex) then ByteLevel(use_regex=False), BPE with
    ``ignore_merges`` (a piece already in the vocab is one token, as in tiktoken)."""
    vocab, merges = hf_vocab_and_merges(tok.mergeable_ranks)
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": _oniguruma_pattern(tok.pattern)}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": True, "vocab": vocab, "merges": merges},
    }


def _oniguruma_pattern(pattern: str) -> str:
    """Oniguruma (HF) reads ``X{m,n}+`` as ``(X{m,n})+``, not as possessive; a bounded repeat of
    one character class at the end of an alternative matches the same greedy, so drop the ``+``."""
    import re

    return re.sub(r"(\{\d+(?:,\d*)?\})\+", r"\1", pattern)
