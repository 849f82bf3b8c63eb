"""Near-duplicate removal with MinHash LSH (Broder 1997; datasketch), as in Gopher and FineWeb.

Shingles are 5-grams of lower-cased words (FineWeb uses 5-grams). Candidates from the LSH index
are confirmed with the estimated Jaccard similarity, so a document is dropped only when it is
above the threshold against an earlier kept document. A fixed seed makes the result reproducible.
"""

from __future__ import annotations

from lmforge.clean.document import Document
from lmforge.clean.words import split_words

from functools import lru_cache

SEED = 1
SCHEME = "affine32"
"""datasketch's default hashing scheme since 2.0; named, because stored values carry no trace of it."""
SHINGLE_WORDS = 5


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[bytes]:
    """Word n-grams of ``text`` (the whole text as one shingle when it has fewer than n words).

    >>> sorted(shingles("a b c", n=2))
    [b'a b', b'b c']
    """
    words = [w.lower() for w in split_words(text)]
    if len(words) < n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i:i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


def signature(text: str, num_perm: int):
    """The MinHash signature (a numpy uint64 array of ``num_perm`` values) of ``text``."""
    m = _empty_minhash(num_perm).copy()
    m.update_batch(list(shingles(text)))
    return m.hashvalues


@lru_cache(maxsize=4)
def _empty_minhash(num_perm: int):
    # Drawing the permutations is the slow part of a new MinHash; copies share them.
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=SEED, scheme=SCHEME)


class MinHashDedup:
    """``near_duplicate`` when a kept document has estimated Jaccard >= ``threshold``; detail: its id and score."""

    name = "near_dedup"

    def __init__(self, threshold: float = 0.8, num_perm: int = 128):
        from datasketch import MinHashLSH

        self.threshold, self.num_perm = threshold, num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.kept: dict[int, object] = {}
        self.ids: list[str] = []

    def filter(self, doc: Document):
        from datasketch import LeanMinHash

        values = doc.meta.get("minhash")
        values = values if values is not None else signature(doc.text, self.num_perm)
        m = LeanMinHash(seed=SEED, hashvalues=values, scheme=SCHEME)
        # Keys are insertion ranks: the earliest kept match is the one named.
        for key in sorted(self.lsh.query(m)):
            score = m.jaccard(self.kept[key])
            if score >= self.threshold:
                return False, "near_duplicate", f"{self.ids[key]} jaccard={score:.3f}"
        key = len(self.ids)
        self.ids.append(doc.id)
        self.kept[key] = m
        self.lsh.insert(key, m)
        return True
