from clean_texts import BREAD, RIVER

from lmforge.clean.dedup.exact import ExactDedup, text_hash
from lmforge.clean.dedup.minhash import MinHashDedup, shingles, signature
from lmforge.clean.document import Document


def doc(i: str, text: str) -> Document:
    return Document(id=i, url=f"https://example.com/{i}", source="test", text=text)


def test_exact_duplicate_points_at_the_kept_document():
    f = ExactDedup()
    assert f.filter(doc("first", RIVER)) is True
    assert f.filter(doc("other", BREAD)) is True
    # Case and spacing differences are still the same text.
    assert f.filter(doc("copy", "  " + RIVER.upper().replace(" ", "   "))) == (False, "exact_duplicate", "first")
    assert text_hash("a  b") == text_hash("A b") != text_hash("a b c")


def test_near_duplicate_with_a_few_words_changed_is_dropped():
    f = MinHashDedup(threshold=0.8, num_perm=128)
    edited = RIVER.replace("old town", "old city").replace("trout", "salmon")
    assert f.filter(doc("river", RIVER)) is True
    assert f.filter(doc("bread", BREAD)) is True
    keep, reason, detail = f.filter(doc("edited", edited))
    assert (keep, reason) == (False, "near_duplicate") and detail.startswith("river jaccard=")
    # A different document that shares a paragraph is kept.
    assert f.filter(doc("mix", RIVER.split("\n\n")[0] + "\n\n" + BREAD)) is True


def test_minhash_estimate_is_close_to_the_true_jaccard_and_reproducible():
    edited = RIVER.replace("old town", "old city")
    a, b = shingles(RIVER), shingles(edited)
    true_jaccard = len(a & b) / len(a | b)
    sig_a, sig_b = signature(RIVER, 256), signature(edited, 256)
    estimate = (sig_a == sig_b).mean()
    assert abs(estimate - true_jaccard) < 0.08
    assert (signature(RIVER, 256) == sig_a).all()  # fixed seed: same signature every time
