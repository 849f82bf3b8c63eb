"""Each clean shard's result on disk, under the run's ``clean_parts/``: an interrupted clean resumes
at the shards it had not finished, and the shards' texts go through files rather than through
a process pool's pipes or Ray's object store.

A shard's part is ``NNNNN.docs.parquet`` and ``NNNNN.rejects.parquet``, then ``NNNNN.stats.json``,
written last: it marks the part complete. ``plan.json`` names what the parts were made from
(the inputs with their sizes and times, the clean settings, the shard plan); parts made from
another plan are removed, never mixed in. The stage removes the folder once its outputs are written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lmforge.clean.document import Document, Reject
from lmforge.clean.stats import CleanStats
from lmforge.rundir import write_json_atomic

PLAN = "plan.json"
VERSION = 3


def open_parts(folder: Path, plan: dict) -> set[int]:
    """The shards already done for ``plan``; the folder is emptied when it holds another plan's."""
    plan = json.loads(json.dumps({"version": VERSION, **plan}))  # as it reads back (tuples are lists)
    saved = folder / PLAN
    if folder.exists() and (not saved.exists() or json.loads(saved.read_text(encoding="utf-8")) != plan):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not saved.exists():
        write_json_atomic(saved, plan)
    return {int(p.name.split(".")[0]) for p in folder.glob("*.stats.json")}


def save(folder: Path, index: int, result) -> int:
    """Write shard ``index``'s ShardResult; return its record count (for progress bars)."""
    import pyarrow as pa

    _write(folder / f"{index:05d}.docs.parquet", pa.Table.from_pylist(
        [_doc_row(d) for d in result.docs], schema=_DOC_SCHEMA()))
    _write(folder / f"{index:05d}.rejects.parquet", pa.Table.from_pylist(
        [_reject_row(r) for r in result.rejects], schema=_REJECT_SCHEMA()))
    write_json_atomic(folder / f"{index:05d}.stats.json", _stats_dict(result.stats))
    return result.stats.totals["records"]


def load_stats(folder: Path, index: int) -> CleanStats:
    """Shard ``index``'s counts (its rows are read by clean/outputs.py)."""
    return _stats(json.loads((folder / f"{index:05d}.stats.json").read_text(encoding="utf-8")))


def input_fingerprint(path: str) -> list:
    """(path, size, mtime) of a local input, the path alone for a remote one."""
    try:
        st = Path(path).stat()
    except OSError:
        return [path]
    return [path, st.st_size, st.st_mtime_ns]


def _write(path: Path, table) -> None:
    # row groups of about 2 MB of text: the stage's merge reads every part at once, a row group
    # of each at a time
    from lmforge.clean.outputs import write_table

    write_table(table, path)


def _DOC_SCHEMA():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("url", pa.string()), ("source", pa.string()), ("text", pa.string()),
                      ("date", pa.string()), ("language", pa.string()), ("language_score", pa.float64()),
                      ("order_file", pa.int64()), ("order_record", pa.int64())])


def _REJECT_SCHEMA():
    import pyarrow as pa

    return pa.schema([(name, pa.string()) for name in ("id", "url", "source", "step", "reason", "detail", "text")]
                     + [("order_file", pa.int64()), ("order_record", pa.int64())])


def _doc_row(d: Document) -> dict:
    return {"id": d.id, "url": d.url, "source": d.source, "text": d.text, "date": d.date, "language": d.language,
            "language_score": d.language_score, "order_file": d.order[0], "order_record": d.order[1]}


def _reject_row(r: Reject) -> dict:
    return {"id": r.id, "url": r.url, "source": r.source, "step": r.step, "reason": r.reason, "detail": r.detail,
            "text": r.text, "order_file": r.order[0], "order_record": r.order[1]}


def _stats_dict(stats: CleanStats) -> dict:
    return {"steps": {name: dict(c) for name, c in stats.steps.items()}, "seconds": dict(stats.seconds),
            "skipped": dict(stats.skipped), "sources": {s: dict(c) for s, c in stats.sources.items()},
            "source_steps": {s: {n: dict(c) for n, c in by.items()} for s, by in stats.source_steps.items()},
            "totals": dict(stats.totals), "unreadable": stats.unreadable}


def _stats(data: dict) -> CleanStats:
    stats = CleanStats()
    for name, counts in data["steps"].items():
        stats.step(name).update(counts)
    stats.seconds.update(data["seconds"])
    stats.skipped.update(data["skipped"])
    for source, counts in data["sources"].items():
        stats.sources[source].update(counts)
    for source, by_step in data.get("source_steps", {}).items():
        for name, counts in by_step.items():
            stats.source_step(source, name).update(counts)
    stats.totals.update(data["totals"])
    stats.unreadable.update(data.get("unreadable", {}))
    return stats
