"""Training known answers, round trips, special tokens, streaming decode, the file format."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lmf_tokenizer_data import ADVERSARIAL, make_texts
from lmforge.errors import LmforgeError
from lmforge.tokenizer.bpe import PATTERNS, Tokenizer, resolve_pattern
from lmforge.tokenizer.train import save_tokenizer_dir, train_tokenizer


def reference_merges(texts: list[str], n_merges: int, pattern: str) -> list[bytes]:
    """Textbook BPE (minbpe-style): merge the most frequent pair; ties -> smallest (left, right) ids."""
    chunks = Counter(tuple(m.encode()) for t in texts for m in regex.findall(pattern, t))
    words = {w: list(w) for w in chunks}
    vocab = {i: bytes([i]) for i in range(256)}
    for new_id in range(256, 256 + n_merges):
        counts = Counter()
        for w, ids in words.items():
            for pair in zip(ids, ids[1:]):
                counts[pair] += chunks[w]
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        for w, ids in words.items():
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            words[w] = out
    return [vocab[i] for i in range(256, len(vocab))]


def learned(tok: Tokenizer) -> list[bytes]:
    return [b for b, _ in sorted(tok.mergeable_ranks.items(), key=lambda kv: kv[1])][256:]


def test_known_answer_aaabdaaabac():
    # Counts: (a,a) 4 -> "aa"; then (aa,a) and (a,b) both 2: the tie goes to the smaller ids (97, 98).
    tok = train_tokenizer(["aaabdaaabac"], 256 + 3 + 1, pattern=r"[^\n]+")
    assert learned(tok) == [b"aa", b"ab", b"aaab"]
    assert tok.special_tokens == {"<|endoftext|>": 259} and tok.bos_id == 259 and tok.vocab_size == 260
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]


def test_merges_match_textbook_bpe():
    texts = make_texts(30)
    tok = train_tokenizer(texts, 256 + 120 + 1, pattern="gpt4")
    assert learned(tok) == reference_merges(texts, 120, PATTERNS["gpt4"])


def test_vocab_size_bounds_and_small_corpus():
    assert train_tokenizer(["hello"], 257).vocab_size == 257  # bytes + <|endoftext|>, no merges
    tok = train_tokenizer(["ab", "ab"], 1000, special_tokens=["<|endoftext|>", "<|pad|>"])
    assert tok.vocab_size == 256 + 1 + 2  # only one pair exists: the corpus caps the vocabulary
    assert tok.special_tokens == {"<|endoftext|>": 257, "<|pad|>": 258}


def test_empty_corpus_is_a_clear_error():
    with pytest.raises(LmforgeError, match="corpus is empty"):
        train_tokenizer(iter(["", ""]), 300)


def test_corpus_fingerprint_tracks_the_texts():
    a = train_tokenizer(["ab", "c"], 300).meta["corpus"]
    b = train_tokenizer(["a", "bc"], 300).meta["corpus"]
    assert a["bytes"] == b["bytes"] == 3 and a["documents"] == 2
    assert a["sha256"] != b["sha256"] and len(a["sha256"]) == 64


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_round_trip_adversarial(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=300))
def test_round_trip_any_unicode(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_special_tokens_are_plain_text_unless_allowed(tok):
    eot = "<|endoftext|>"
    assert tok.bos_id not in tok.encode(f"a{eot}b")
    assert tok.decode(tok.encode(f"a{eot}b")) == f"a{eot}b"
    allowed = tok.encode(f"a{eot}b", allowed_special="all")
    assert allowed == tok.encode("a") + [tok.bos_id] + tok.encode("b")
    assert tok.encode(eot, allowed_special={eot}) == [tok.bos_id]
    assert tok.encode_batch(["hi there", eot]) == [tok.encode("hi there"), tok.encode(eot)]


def test_stream_decoder_waits_for_whole_characters(tok):
    text = "한국어 😀 ok"
    ids = tok.encode(text)
    dec = tok.stream_decoder()
    pieces = [dec.feed(i) for i in ids] + [dec.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    # A 3-byte syllable split over two byte tokens: nothing until the second one arrives.
    raw = "한".encode()
    dec = tok.stream_decoder()
    assert dec.feed(raw[0]) == "" and dec.feed(raw[1]) == "" and dec.feed(raw[2]) == "한"
    dec.feed(raw[0])
    assert dec.flush() == "\ufffd"  # an unfinished character at the end


def test_decode_replaces_only_broken_bytes(tok):
    raw = "é".encode()
    assert tok.decode([ord("a"), raw[0]]) == "a\ufffd"
    assert tok.decode_bytes([ord("a"), raw[0], raw[1]]) == "aé".encode()
    with pytest.raises(LmforgeError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


def test_split_digits():
    tok = train_tokenizer(["12345 67890 " * 50], 300, split_digits=True)
    assert all(not any(chr(c).isdigit() for c in b) or len(b) == 1 for b in learned(tok))
    assert [tok.decode([i]) for i in tok.encode("2026")] == ["2", "0", "2", "6"]
    assert resolve_pattern("o200k", split_digits=True).count(r"\p{N}{1,3}") == 0


def test_bad_pattern_is_a_clear_error():
    with pytest.raises(LmforgeError, match="not a valid regex"):
        resolve_pattern("([unclosed")


def test_save_load_round_trip_and_versions(tok, tmp_path):
    out = save_tokenizer_dir(tok, tmp_path / "tk")
    again = Tokenizer.load(out)
    assert again.mergeable_ranks == tok.mergeable_ranks and again.special_tokens == tok.special_tokens
    assert again.encode(ADVERSARIAL[7]) == tok.encode(ADVERSARIAL[7])
    data = json.loads((out / "tokenizer.json").read_text())
    assert data["format"] == "lmforge-bpe" and data["vocab_size"] == tok.vocab_size
    assert data["corpus"]["sha256"] == tok.meta["corpus"]["sha256"]
    data["version"] = 99
    (out / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(LmforgeError, match="version 99 is not supported"):
        Tokenizer.load(out)
    with pytest.raises(LmforgeError, match="not an lmforge tokenizer"):
        Tokenizer.load(out / "hf")
    with pytest.raises(LmforgeError, match="no tokenizer here"):
        Tokenizer.load(tmp_path / "missing")


def test_damaged_file_is_a_clear_error(tok, tmp_path):
    data = tok.to_dict()
    del data["mergeable_ranks"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(LmforgeError, match="damaged tokenizer file"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(LmforgeError, match="not a valid tokenizer file"):
        Tokenizer.load(tmp_path)


def test_decode_accepts_numpy_ids(tok):
    import numpy as np

    ids = tok.encode("numpy ids 한")
    assert tok.decode(np.array(ids, dtype=np.uint16)) == "numpy ids 한"


def test_vocab_size_out_of_range():
    with pytest.raises(LmforgeError, match="out of range"):
        train_tokenizer(["abc"], 256)
    with pytest.raises(LmforgeError, match="out of range"):
        train_tokenizer(["abc"], 2**17 + 1)
