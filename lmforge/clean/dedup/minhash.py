"""MinHash signatures of word 5-grams, many documents at a time, with FineWeb's settings.

FineWeb (datatrove ``MinhashConfig``) signs word 5-grams of a simplified text (lower case, no
punctuation, digits as 0) with 14 bands of 8 rows: two documents share a band, and count as
duplicates, with probability 1 - (1 - J^8)^14 for a Jaccard similarity J (0.5 at J ~ 0.72, 0.92
at J = 0.8). Here the text is simplified and cut into words on its UTF-8 bytes with numpy, a
batch of documents at once (a Python loop over words was most of the time), each shingle is
hashed to 64 bits from its words' hashes, and rensa (Rust) takes the minimum of ``num_perm``
hash functions over them.

Words are runs of bytes between whitespace and punctuation (ASCII, Unicode spaces and the
General Punctuation block, CJK and full-width punctuation); a Chinese or Japanese character
(U+3040..U+9FFF) is a word of its own, as those scripts write no spaces.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

SHINGLE_WORDS = 5
"""FineWeb: word 5-grams (datatrove MinhashConfig n_grams=5)."""
BANDS = 14
ROWS = 8
"""FineWeb: 14 buckets of 8 hashes (datatrove MinhashConfig num_buckets=14, hashes_per_bucket=8)."""
SEED = 1
_TABLE_SEED = 20240601
_U64 = np.uint64
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every output bit depends on every input bit (in place)."""
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


_SIMPLIFY = bytes.maketrans(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\x7f123456789", b" " * 33 + b"0" * 9)
"""FineWeb's simplify_text on bytes: ASCII punctuation becomes a space, every digit 0."""
_WIDE_PUNCT = re.compile("[\u0085\u00a0\u00a1\u00ab\u00b7\u00bb\u00bf\u1680\u2000-\u206f\u3000-\u303f"
                         "\uff01-\uff0f\uff1a-\uff20]")
"""Unicode spaces and the common punctuation beyond ASCII: « » ¿ – — ‘ ’ “ ” … and CJK 、。「」 ！ ？"""
_CJK_CHAR = re.compile("[\u3040-\u9fff]")  # kana and CJK ideographs: a word each


def _simplified(text: str) -> bytes:
    if not text.isascii():  # only texts beyond ASCII pay for the regexes
        text = _WIDE_PUNCT.sub(" ", text)
        if _CJK_CHAR.search(text):
            text = _CJK_CHAR.sub(" \\g<0> ", text)
    return text.lower().encode("utf-8", "replace").translate(_SIMPLIFY)


def _word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit hash of every word of the texts in order, the number of words of each text).

    A word is a run of bytes above 0x20 after simplification; it is hashed from its length and
    its first and last 8 bytes (exact for words of up to 16 bytes, nearly all words), read as
    integers straight from the bytes: a few numpy passes over the batch, no Python loop over words.
    """
    encoded = [_simplified(t) for t in texts]
    data = b" " + b" ".join(encoded) + b" " + bytes(8)  # blanks around every text; 8 bytes to read past the end
    word = np.frombuffer(data, dtype=np.uint8) > 0x20
    edges = np.flatnonzero(word[1:] != word[:-1]) + 1  # start, end, start, end...
    starts, ends = edges[0::2], edges[1::2]
    lengths = ends - starts
    eight = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # the 8 bytes at each offset
    head = eight[starts] & _MASKS[np.minimum(lengths, 8)]  # the word's own bytes of the 8 read
    tail = head.copy()  # the last 8 bytes: the same for words of up to 8 bytes
    long = np.flatnonzero(lengths > 8)
    tail[long] = eight[ends[long] - 8]
    head *= _U64(0x9E3779B97F4A7C15)
    tail *= _U64(0xC2B2AE3D27D4EB4F)
    head += tail
    head += lengths.astype(_U64)
    text_starts = np.cumsum([1] + [len(e) + 1 for e in encoded[:-1]])
    return _mix(head), np.diff(np.append(np.searchsorted(starts, text_starts), len(starts)))


def shingle_hashes(texts: list[str], n: int = SHINGLE_WORDS) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit hashes of every text's word n-grams, concatenated; offsets: text i owns
    ``hashes[offsets[i]:offsets[i + 1]]``). A text of fewer than n words is one shingle of all of
    them; a text with no word has none.

    >>> hashes, offsets = shingle_hashes(["one two three four five six", "Two, three  four FIVE six!"])
    >>> offsets.tolist(), bool(hashes[1] == hashes[2])
    ([0, 2, 3], True)
    """
    words, counts = _word_hashes(texts)
    keys = _ngram_keys(n)
    m = max(len(words) - n + 1, 0)
    grams, term = words[:m] * keys[0], np.empty(m, _U64)
    for j in range(1, n):
        grams += np.multiply(words[j:j + m], keys[j], out=term)
    ends = np.cumsum(counts)
    across = (ends[:, None] - np.arange(1, n)).ravel()  # n-grams that start in one text and end in the next
    whole = np.ones(m, dtype=bool)
    whole[across[(across >= 0) & (across < m)]] = False
    grams = grams[whole]
    per_text = np.maximum(counts - n + 1, 0)
    short = np.flatnonzero((counts > 0) & (counts < n))
    if len(short):  # few: texts of one to four words are one shingle each
        begins = ends - counts
        extra = np.array([(words[begins[i]:ends[i]] * keys[:counts[i]]).sum() for i in short], _U64)
        grams = np.insert(grams, np.cumsum(per_text)[short], extra)  # after the texts before it
        per_text[short] = 1
    offsets = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(per_text, out=offsets[1:])
    return _mix(grams), offsets


@lru_cache(maxsize=8)
def _ngram_keys(n: int) -> np.ndarray:
    """Odd multipliers of the n words' hashes: the same words in another order make another shingle."""
    return np.random.default_rng(_TABLE_SEED + n).integers(0, 2**64, size=n, dtype=np.uint64) | _U64(1)


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[int]:
    """The set of ``text``'s shingle hashes (for exact Jaccard similarities in tests and benches)."""
    return set(shingle_hashes([text], n)[0].tolist())


def signatures(texts: list[str], num_perm: int = BANDS * ROWS, n: int = SHINGLE_WORDS,
               seed: int = SEED) -> np.ndarray:
    """MinHash signatures of ``texts``: a (len(texts), num_perm) uint32 array.

    >>> sigs = signatures(["the same words in the same order here", "The same words, in the same order here."])
    >>> sigs.shape, bool((sigs[0] == sigs[1]).all())
    ((2, 112), True)
    """
    from rensa import RMinHash

    if not texts:
        return np.zeros((0, num_perm), np.uint32)
    hashes, offsets = shingle_hashes(texts, n)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets.astype(np.uint64), num_perm, seed)
    return np.array(matrix.to_rows(), dtype=np.uint32).reshape(len(texts), num_perm)


def signature(text: str, num_perm: int = BANDS * ROWS, n: int = SHINGLE_WORDS, seed: int = SEED) -> np.ndarray:
    """The MinHash signature of one text (prefer :func:`signatures` for many)."""
    return signatures([text], num_perm, n, seed)[0]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The Jaccard similarity two signatures estimate: the share of equal positions."""
    return float(np.mean(a == b))


def band_hashes(sigs: np.ndarray, bands: int = BANDS, rows: int = ROWS) -> np.ndarray:
    """(n, bands) uint64: one hash of each band's ``rows`` values; equal bands give equal hashes
    (and unequal ones collide with probability 2^-64)."""
    sigs = np.ascontiguousarray(sigs[:, :bands * rows], dtype=np.uint32)
    out = np.zeros((len(sigs), bands), _U64)
    for r in range(rows):
        out = _mix(out * _U64(0x9E3779B97F4A7C15) + sigs[:, r::rows][:, :bands].astype(_U64) + _U64(r + 1))
    return out
