"""A tiny multilingual corpus and a run directory holding it (shared by the tokenizer tests)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lmforge.config import config_from_dict
from lmforge.rundir import RunDir

_EN = ("the quick brown fox jumps over the lazy dog while the tokenizer learns its merges "
       "and every document begins with a token of its own").split()
_KO = "안녕하세요 세계 토크나이저 문서 한국어 문장 입니다".split()
_CODE = ["def f(x):\n    return x + 1\n", "for i in range(10):\n\tprint(i)\n", "if a == b: pass  # 2024\n"]

ADVERSARIAL = [
    "", " ", "   leading and trailing   ", "a\n\nb\r\n\r\nc\n", "\t\t tabs \t", "x" * 3000,
    "1234567890 3.14159 2026-11-28 000001", "안녕하세요, 세계! 한국어 텍스트", "emoji 😀👍🏽🇰🇷 family 👨‍👩‍👧‍👦",
    "<|endoftext|> is plain text here", "Don't WE'LL they've I'm", "mixed\u00a0nbsp\u2028line\u2029para",
    "control \x00\x01\x1f\x7f chars", "Ünïcödé ñ ß ﬁ", "   \n   \n", "😀" * 50, "a  b   c    d",
]


def make_texts(n: int = 60, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        words = rng.choices(_KO if i % 5 == 0 else _EN, k=rng.randint(20, 80))
        text = " ".join(words) + f". Number {rng.randint(0, 99999)}.\n"
        if i % 4 == 0:
            text += rng.choice(_CODE)
        texts.append(text)
    return texts


def write_docs(path: Path, texts: list[str], sources: list[str] | None = None, ids: list[str] | None = None,
               languages: list[str] | None = None) -> Path:
    n = len(texts)
    table = pa.table({
        "id": ids or [f"doc-{i}" for i in range(n)],
        "url": [f"https://example.com/{i}" for i in range(n)],
        "source": sources or ["web"] * n,
        "text": texts,
        "language": languages or ["ko" if "안녕" in t or "세계" in t else "en" for t in texts],
        "language_score": [1.0] * n,
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def make_run(root: Path, texts: list[str], **tokenizer) -> tuple:
    rd = RunDir(root)
    sources = ["web" if i % 3 else "code" for i in range(len(texts))]
    write_docs(rd.docs / "part-00000.parquet", texts, sources)
    cfg = config_from_dict({"name": root.name, "runs_dir": str(root.parent),
                            "tokenizer": {"vocab_size": 600, **tokenizer}})
    return cfg, rd
