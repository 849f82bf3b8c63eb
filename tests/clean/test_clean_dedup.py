import random
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clean_texts import BREAD, RIVER

from lmforge.clean.dedup.exact import exact_hashes
from lmforge.clean.dedup.minhash import band_hashes, shingle_hashes, shingles, signature, signatures
from lmforge.clean.dedup.settings import MinHashConfig
from lmforge.clean.dedup.stages import components, deduplicate, process_map, removed_rows

WORDS = [f"w{a}{b}" for a in "abcdefghij" for b in "klmnopqrst"]  # 100 plain words: one tokenisation everywhere


def words(seed: int, n: int = 300) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(WORDS) for _ in range(n)]


def string_shingles(ws: list[str], n: int = 5) -> set[str]:
    return {" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1)}


def test_words_are_simplified_like_fineweb():
    # case, ASCII punctuation and digits do not matter; word order does
    a, b = shingle_hashes(["Hello, World! It is 1999 -- a year.", "hello world it is 2000 a year"])[0].reshape(2, -1)
    assert (a == b).all()
    assert shingles("one two three four five") != shingles("two one three four five")
    # Chinese and Japanese characters are words of their own; 、。 are not words
    assert len(shingles("我们今天去公园玩。", n=1)) == 8 and shingles("我们、今天") == shingles("我 们 今 天")
    hashes, offsets = shingle_hashes(["", "one two", "a b c d e f", "x"])
    assert offsets.tolist() == [0, 0, 1, 3, 4]  # none, one for a short text, n-grams, one


def test_shingle_sets_match_string_shingles():
    a, b = words(1), words(1)[:150] + words(2)[:150]
    true = len(string_shingles(a) & string_shingles(b)) / len(string_shingles(a) | string_shingles(b))
    assert len(shingles(" ".join(a)) & shingles(" ".join(b))) / len(shingles(" ".join(a)) | shingles(" ".join(b))) \
        == pytest.approx(true)


@pytest.mark.parametrize("keep", [300, 270, 240, 150, 60])
def test_jaccard_estimate_agrees_with_datasketch(keep):
    from datasketch import MinHash

    a = words(7)
    b = a[:keep] + words(8)[keep:]
    sa, sb = string_shingles(a), string_shingles(b)
    true = len(sa & sb) / len(sa | sb)
    ds = []
    for s in (sa, sb):
        m = MinHash(num_perm=256, seed=1)
        m.update_batch([x.encode() for x in s])
        ds.append(m)
    ours = signatures([" ".join(a), " ".join(b)], num_perm=256)
    estimate = float(np.mean(ours[0] == ours[1]))
    assert abs(estimate - true) < 0.1 and abs(estimate - ds[0].jaccard(ds[1])) < 0.12


def test_signatures_are_reproducible_and_batch_independent():
    texts = [RIVER, BREAD, RIVER.upper()]
    sigs = signatures(texts)
    assert sigs.shape == (3, 112) and sigs.dtype == np.uint32
    assert (sigs[0] == sigs[2]).all() and not (sigs[0] == sigs[1]).all()
    assert (signature(BREAD) == sigs[1]).all()  # alone or in a batch: the same
    assert (band_hashes(sigs)[0] == band_hashes(sigs)[2]).all()


def test_components_follow_chains():
    pairs = np.array([[5, 9], [9, 2], [7, 8], [2, 30]], dtype=np.uint64)
    nodes, label = components(pairs)
    groups = {}
    for node, group in zip(nodes.tolist(), label.tolist()):
        groups.setdefault(group, set()).add(node)
    assert sorted(groups.values(), key=min) == [{2, 5, 9, 30}, {7, 8}]


def edit(ws: list[str], every: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(WORDS) if i % every == 0 else w for i, w in enumerate(ws)]


def write_parts(folder, docs: list[tuple[str, str, str]], per_part: int) -> list[int]:
    """Parts as the clean shards save them; docs (id, url, text) in input order."""
    folder.mkdir(parents=True, exist_ok=True)
    indexes = []
    for index, start in enumerate(range(0, len(docs), per_part)):
        chunk = docs[start:start + per_part]
        pq.write_table(pa.table({
            "id": [d[0] for d in chunk], "url": [d[1] for d in chunk], "text": [d[2] for d in chunk],
            "order_file": [0] * len(chunk), "order_record": list(range(start, start + len(chunk)))}),
            folder / f"{index:05d}.docs.parquet")
        indexes.append(index)
    return indexes


def corpus() -> tuple[list[tuple[str, str, str]], dict[str, tuple[str, str]]]:
    """Documents and the expected removals: {id: (reason, kept id)}."""
    base = {k: words(100 + k, 400) for k in range(6)}
    docs = [("a0", base[0]), ("b0", base[1]), ("a1", edit(base[0], 100, 1)), ("c0", base[2]),
            ("a0-copy", base[0]), ("b1", edit(base[1], 150, 2)), ("d0", base[3]), ("a2", edit(base[0], 130, 3)),
            ("e0", base[4]), ("f0", base[5]), ("d0-copy", base[3])]
    expected = {"a1": ("near_duplicate", "a0"), "a0-copy": ("exact_duplicate", "a0"), "b1": ("near_duplicate", "b0"),
                "a2": ("near_duplicate", "a0"), "d0-copy": ("exact_duplicate", "d0")}
    return [(i, f"https://x.test/{i}", " ".join(ws)) for i, ws in docs], expected


def removals(folder, indexes, docs, per_part) -> dict[str, tuple[str, str]]:
    out = {}
    for index in indexes:
        for row, (_, reason, kept) in removed_rows(folder, index).items():
            out[docs[index * per_part + row][0]] = (reason, kept)
    return out


@pytest.mark.parametrize("per_part,buckets_of", [(3, 1_000_000), (4, 3), (100, 1_000_000)])
def test_four_stages_find_exact_and_near_duplicates(tmp_path, per_part, buckets_of):
    docs, expected = corpus()
    folder = tmp_path / "parts"
    indexes = write_parts(folder, docs, per_part)
    settings = replace(MinHashConfig(), docs_per_bucket=buckets_of)  # 3: several buckets per band
    counts = deduplicate(folder, indexes, True, True, settings, by_url=False)
    assert removals(folder, indexes, docs, per_part) == expected
    assert counts["exact_dedup"]["dropped_exact_duplicate"] == 2 and counts["near_dedup"]["in"] == len(docs) - 2
    assert counts["near_dedup"]["out"] == len(docs) - len(expected)
    if buckets_of == 3:
        assert len(list((folder / "dedup" / "pairs").glob("b00-*.npy"))) == 4


def test_kept_document_is_the_first_in_output_order(tmp_path):
    docs, _ = corpus()
    docs = [(i, f"https://x.test/{'zz' if i == 'a0' else i}", t) for i, _, t in docs]  # a0's URL sorts last
    indexes = write_parts(tmp_path / "p", docs, 5)
    deduplicate(tmp_path / "p", indexes, True, True, MinHashConfig(), by_url=True)
    got = removals(tmp_path / "p", indexes, docs, 5)
    assert got["a0"] == ("exact_duplicate", "a0-copy") and got["a1"] == ("near_duplicate", "a0-copy")


def test_stages_resume_and_a_process_pool_gives_the_same(tmp_path):
    docs, expected = corpus()
    folder = tmp_path / "parts"
    indexes = write_parts(folder, docs, 3)
    deduplicate(folder, indexes, True, True, MinHashConfig(), by_url=False, map_fn=process_map(2))
    assert removals(folder, indexes, docs, 3) == expected
    work = folder / "dedup"
    signed = (work / "signs" / "00001").stat().st_mtime_ns
    import shutil

    shutil.rmtree(work / "removed")
    (work / "pairs" / "b03-000.npy").unlink()
    deduplicate(folder, indexes, True, True, MinHashConfig(), by_url=False)
    assert removals(folder, indexes, docs, 3) == expected
    assert (work / "signs" / "00001").stat().st_mtime_ns == signed  # finished parts were not signed again


def test_exact_hash_ignores_case_and_spacing():
    a, b, c = exact_hashes(["Hello   World\n", "hello world", "hello world!"])
    assert a == b != c


def test_one_page_per_url_spelling_even_without_text_dedup(tmp_path):
    pages = [("root", "http://a.test/"), ("index", "http://A.test:80/index.html"), ("docs", "http://a.test/docs/"),
             ("docs-index", "http://a.test/docs/Index.htm#top"), ("https", "https://a.test/"),
             ("query", "http://a.test/?b=2&a=1"), ("query2", "http://a.test/index.php?a=1&b=2"), ("local", ""),
             ("local2", "")]
    docs = [(i, url, " ".join(words(k, 50))) for k, (i, url) in enumerate(pages)]
    indexes = write_parts(tmp_path / "p", docs, 4)
    counts = deduplicate(tmp_path / "p", indexes, False, False, MinHashConfig(), by_url=False, url=True)
    assert removals(tmp_path / "p", indexes, docs, 4) == {
        "index": ("duplicate_url", "root"), "docs-index": ("duplicate_url", "docs"), "query2": ("duplicate_url", "query")}
    assert list(counts) == ["url_dedup"] and counts["url_dedup"]["dropped_duplicate_url"] == 3


def test_url_duplicates_do_not_link_their_text_to_the_kept_page(tmp_path):
    a, b = words(1, 300), words(2, 300)
    docs = [("a", "http://x.test/", " ".join(a)), ("a-index", "http://x.test/index.html", " ".join(b)),
            ("b-copy", "http://x.test/b", " ".join(edit(b, 150, 1)))]
    indexes = write_parts(tmp_path / "p", docs, 2)
    deduplicate(tmp_path / "p", indexes, True, True, MinHashConfig(), by_url=False, url=True)
    # a-index goes for its URL; its near copy b-copy stays, as nothing kept is like it
    assert removals(tmp_path / "p", indexes, docs, 2) == {"a-index": ("duplicate_url", "a")}


def test_punctuation_and_spaces_beyond_ascii_are_not_words():
    assert shingles("«Привет», — сказал он… «да»!") == shingles("привет сказал он да")
    assert shingles("non\u00a0breaking space, “quoted” words here") == shingles("non breaking space quoted words here")
    assert shingles("東京！大阪？") == shingles("東 京 大 阪")


def test_a_batch_gives_each_text_the_shingles_it_has_alone():
    rng = random.Random(3)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 9))) for _ in range(300)]
    hashes, offsets = shingle_hashes(texts)
    for i, text in enumerate(texts):
        alone, _ = shingle_hashes([text])
        assert hashes[offsets[i]:offsets[i + 1]].tolist() == alone.tolist(), text
