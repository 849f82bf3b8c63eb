"""Counters of the clean stage: per step ``in``, ``out``, ``dropped_<reason>`` and seconds.

Shards count on their own and the stage adds their counts up, so the totals are the same with
one process, a pool or Ray.
"""

from __future__ import annotations

from collections import Counter, defaultdict


class CleanStats:
    """Counts per step, reader skips, bytes and per-source figures, mergeable across shards."""

    def __init__(self) -> None:
        self.steps: dict[str, Counter] = {}
        self.seconds: Counter = Counter()
        self.skipped: Counter = Counter()
        self.sources: dict[str, Counter] = defaultdict(Counter)
        self.source_steps: dict[str, dict[str, Counter]] = defaultdict(dict)
        """The funnel of each source: source -> step -> ``in``, ``out``, ``dropped_<reason>``."""
        self.totals: Counter = Counter()
        self.unreadable: dict[str, str] = {}
        """Input files that could not be read at all: path -> reason."""

    def step(self, name: str) -> Counter:
        """The counter of ``name``; steps keep the order in which they first count."""
        return self.steps.setdefault(name, Counter({"in": 0, "out": 0}))

    def source_step(self, source: str, name: str) -> Counter:
        return self.source_steps[source].setdefault(name, Counter({"in": 0, "out": 0}))

    def merge(self, other: "CleanStats") -> None:
        for name, counts in other.steps.items():
            self.step(name).update(counts)
        self.seconds.update(other.seconds)
        self.skipped.update(other.skipped)
        for source, counts in other.sources.items():
            self.sources[source].update(counts)
        for source, steps in other.source_steps.items():
            for name, counts in steps.items():
                self.source_step(source, name).update(counts)
        self.totals.update(other.totals)
        self.unreadable.update(other.unreadable)

    def as_dict(self) -> dict:
        steps = {name: {**dict(c), "seconds": round(self.seconds[name], 3)} for name, c in self.steps.items()}
        skipped = {k: v for k, v in self.skipped.items() if not k.startswith("kept_")}
        kept = {k[5:]: v for k, v in self.skipped.items() if k.startswith("kept_")}
        return {"records": 0, "docs": 0, **dict(self.totals), "reader_skipped": skipped,
                "reader_kept_despite": kept, "unreadable": dict(sorted(self.unreadable.items())),
                "steps": steps, "sources": {s: dict(c) for s, c in sorted(self.sources.items())},
                "source_steps": {s: {name: dict(c) for name, c in by_step.items()}
                                 for s, by_step in sorted(self.source_steps.items())}}


def log_unreadable(stats: dict) -> None:
    """One line per input file that could not be read, with the reason."""
    for reason in stats["unreadable"].values():
        print(f"[clean] unreadable: {reason}")


def check_kept(stats: dict) -> None:
    """Raise when no document was kept: a stage with no output must not be marked complete."""
    from lmforge.errors import LmforgeError

    if stats["docs"]:
        return
    unreadable = stats["unreadable"]
    why = f"; {len(unreadable)} of {stats.get('inputs', '?')} input files unreadable" if unreadable else ""
    first = f" (first: {next(iter(unreadable.values()))})" if unreadable else ""
    raise LmforgeError(f"clean: no document kept from {stats['records']} records{why}{first}; "
                       "check the inputs, [clean] languages and the quality thresholds (drops: rejects/*.parquet)")
