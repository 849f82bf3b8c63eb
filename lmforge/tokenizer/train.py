"""Stage `tokenizer`: train a byte-level BPE on ``docs/*.parquet`` and write ``tokenizer/``.

Training is rustbpe's (the Rust trainer of nanochat: parallel pre-tokenization and pair
counting, incremental pair-count updates). Its merges follow the classic algorithm: the most
frequent adjacent pair is merged first; ties go to the pair with the smaller (left id, right id),
so on "aaabdaaabac" the merges are (a,a), then (a,b) over (aa,a) (both seen twice), then (aa,ab).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Iterable, Iterator

from lmforge.errors import LmforgeError
from lmforge.tokenizer.bpe import Tokenizer, resolve_pattern
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.corpus import batch_keys, doc_files, doc_hash, iter_batches


class CorpusFingerprint:
    """Counts the texts, bytes and a sha256 over them as they stream into the trainer."""

    def __init__(self):
        self.sha = hashlib.sha256()
        self.documents = 0
        self.bytes = 0

    def wrap(self, texts: Iterable[str]) -> Iterator[str]:
        for text in texts:
            data = text.encode("utf-8", "surrogatepass")
            # The length prefix keeps ["ab", "c"] and ["a", "bc"] apart.
            self.sha.update(len(data).to_bytes(8, "little"))
            self.sha.update(data)
            self.documents += 1
            self.bytes += len(data)
            yield text


def train_tokenizer(texts: Iterable[str], vocab_size: int, pattern: str = "gpt4",
                    special_tokens: list[str] = ("<|endoftext|>",), split_digits: bool = False) -> Tokenizer:
    """Train on ``texts``; ``vocab_size`` counts the 256 bytes, the merges and the special tokens.

    A corpus too small to supply that many merges gives a smaller vocabulary (``vocab_size`` of
    the result tells).
    """
    import rustbpe

    if not special_tokens:
        raise LmforgeError("need at least one special token (the document separator <|endoftext|>)")
    if not 256 + len(special_tokens) <= vocab_size <= 2**17:
        raise LmforgeError(f"vocab size {vocab_size} is out of range: use 256 + {len(special_tokens)} special "
                           f"token(s) = {256 + len(special_tokens)} up to 131072")
    pat = resolve_pattern(pattern, split_digits)
    fingerprint = CorpusFingerprint()
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(fingerprint.wrap(texts), vocab_size - len(special_tokens), pattern=pat)
    if fingerprint.bytes == 0:
        raise LmforgeError("the training corpus is empty (no documents with text); check the docs/ folder "
                           "or the clean stage's filters (stats/clean.json)")
    ranks = {bytes(b): r for b, r in trainer.get_mergeable_ranks()}
    specials = {s: len(ranks) + i for i, s in enumerate(special_tokens)}
    meta = {"pattern_name": pattern if pattern in ("gpt2", "gpt4", "o200k") else "custom",
            "split_digits": split_digits, "requested_vocab_size": vocab_size,
            "corpus": {"documents": fingerprint.documents, "bytes": fingerprint.bytes,
                       "sha256": fingerprint.sha.hexdigest()}}
    return Tokenizer(ranks, pat, specials, meta)


def sampled_texts(files: list[Path], max_bytes: int, seed: int) -> Iterator[str]:
    """All texts, or (``max_bytes`` > 0) a seeded sample of whole documents up to that many bytes.

    The sample takes documents in the order of a seeded hash of their keys (URL, else id:
    corpus.doc_key), so it is the same for any file order or crawl; a first pass reads only the
    keys and byte lengths.
    """
    if max_bytes <= 0:
        for batch in iter_batches(files, ["text"]):
            yield from (t for t in batch["text"] if t)
        return
    chosen = _choose_sample(files, max_bytes, seed)
    for batch in iter_batches(files, ["id", "url", "text"]):
        yield from (t for k, t in zip(batch_keys(batch), batch["text"]) if t and k in chosen)


def _choose_sample(files: list[Path], max_bytes: int, seed: int) -> set[str]:
    keyed = [(doc_hash(seed, doc_id), n, doc_id) for doc_id, n in _doc_lengths(files)]
    keyed.sort()
    chosen, total = set(), 0
    for _, n, doc_id in keyed:
        if total >= max_bytes:
            break
        chosen.add(doc_id)
        total += n
    return chosen


def _doc_lengths(files: list[Path]) -> Iterator[tuple[str, int]]:
    """(key, UTF-8 byte length) of every document, computed in Arrow without making Python strings."""
    import pyarrow.compute as pc

    for batch in iter_batches(files, ["id", "url", "text"], batch_size=8192, arrow_columns=("text",)):
        lengths = pc.fill_null(pc.binary_length(batch["text"]), 0).to_pylist()
        yield from zip(batch_keys(batch), lengths)


def run_stage(cfg, rd) -> dict:
    """Train on ``rd.docs`` and write ``rd.tokenizer`` (whole folder swapped in at the end)."""
    tcfg: TokenizerConfig = cfg.tokenizer
    t0 = time.time()
    files = doc_files(rd.docs)
    tok = train_tokenizer(sampled_texts(files, tcfg.max_train_bytes, cfg.seed), tcfg.vocab_size,
                          tcfg.pattern, tcfg.special_tokens, tcfg.split_digits)
    save_tokenizer_dir(tok, rd.tokenizer, tcfg.hf_export)
    corpus = tok.meta["corpus"]
    stats = {"vocab_size": tok.vocab_size, "requested_vocab_size": tcfg.vocab_size, "merges": len(tok.mergeable_ranks) - 256,
             "documents": corpus["documents"], "bytes": corpus["bytes"], "corpus_sha256": corpus["sha256"],
             "train_seconds": round(time.time() - t0, 2)}
    if tok.vocab_size < tcfg.vocab_size:
        print(f"[tokenizer] corpus too small for {tcfg.vocab_size} tokens: learned {tok.vocab_size}")
    return stats


def save_tokenizer_dir(tok: Tokenizer, out: str | os.PathLike, hf_export: bool = True) -> Path:
    """Write the tokenizer into a temporary folder beside ``out``, then swap it in."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok.save(tmp, hf_export=hf_export)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
