"""Reading the documents of ``docs/*.parquet`` in streaming batches (pyarrow), and the seeded
per-document hash that picks training samples and the validation split."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

from lmforge.errors import LmforgeError


def doc_files(docs_dir: str | Path) -> list[Path]:
    """The Parquet files of a docs folder, a single file, or a glob pattern."""
    import glob

    path = Path(docs_dir)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(str(docs_dir), recursive=True) if p.endswith(".parquet"))
    if not files:
        raise LmforgeError(f"{docs_dir}: no documents (*.parquet) found; run the clean stage first "
                           "(`lmforge run CONFIG --only clean`)")
    return files


def iter_batches(files: list[Path], columns: list[str], batch_size: int = 1024,
                 arrow_columns: tuple[str, ...] = ()) -> Iterator[dict[str, list]]:
    """Yield ``{column: values}`` batches; ``id``, ``source`` and ``language`` get defaults when a
    file lacks them. Columns in ``arrow_columns`` stay Arrow arrays (no Python objects)."""
    for path in files:
        pf = open_docs(path, require="text" in columns)
        names = set(pf.schema_arrow.names)
        present = [c for c in columns if c in names]
        offset = 0
        for batch in pf.iter_batches(batch_size=batch_size, columns=present):
            data = {c: batch.column(c) if c in arrow_columns else batch.column(c).to_pylist() for c in present}
            n = batch.num_rows
            if "id" in columns:
                ids = data.get("id") or [None] * n
                data["id"] = [f"{path.name}:{offset + i}" if v is None else str(v) for i, v in enumerate(ids)]
            for column, default in (("source", "default"), ("language", "unknown")):
                if column in columns:
                    data[column] = [default if v is None else v for v in (data.get(column) or [None] * n)]
            offset += n
            yield data


def open_docs(path: Path, require: bool = True, **options):
    """A docs file as a ``pyarrow.parquet.ParquetFile`` (``options`` go to it), checked: readable
    Parquet, with a string ``text`` column when ``require``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path, **options)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise LmforgeError(f"{path}: not a readable Parquet file ({exc}); remove it or clean again") from None
    if require:
        require_text(path, schema.names)
        kind = schema.field("text").type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise LmforgeError(f"{path}: the `text` column holds {kind}, not strings; documents need text")
    return pf


def require_text(path: Path, names) -> None:
    """Refuse a docs file without a ``text`` column, naming the columns it has."""
    if "text" not in names:
        raise LmforgeError(f"{path}: no `text` column (columns: {', '.join(sorted(names))}); "
                           "documents need id, source and text")


def doc_key(doc_id: str, url: str | None) -> str:
    """What picks a document's split and training sample: its URL, else its id. By URL, a page
    goes to the same side whatever crawl or file it came from (a WARC record id is new at each
    crawl), so a re-crawl neither reshuffles the split nor leaks a page from val into train."""
    return url or doc_id


def batch_keys(batch: dict) -> list[str]:
    """:func:`doc_key` of each document of an :func:`iter_batches` batch read with ``id`` and ``url``."""
    urls = batch.get("url") or [None] * len(batch["id"])
    return [doc_key(i, u) for i, u in zip(batch["id"], urls)]


def doc_hash(seed: int, doc_id: str) -> float:
    """A number in [0, 1) fixed by the seed and the document id, so splits and samples are stable
    whatever the file order or the number of workers."""
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
