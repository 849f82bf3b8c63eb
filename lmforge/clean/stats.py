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
        self.totals: Counter = Counter()

    def step(self, name: str) -> Counter:
        """The counter of ``name``; steps keep the order in which they first count."""
        return self.steps.setdefault(name, Counter({"in": 0, "out": 0}))

    def merge(self, other: "CleanStats") -> None:
        for name, counts in other.steps.items():
            self.step(name).update(counts)
        self.seconds.update(other.seconds)
        self.skipped.update(other.skipped)
        for source, counts in other.sources.items():
            self.sources[source].update(counts)
        self.totals.update(other.totals)

    def as_dict(self) -> dict:
        steps = {name: {**dict(c), "seconds": round(self.seconds[name], 3)} for name, c in self.steps.items()}
        return {**dict(self.totals), "reader_skipped": dict(self.skipped), "steps": steps,
                "sources": {s: dict(c) for s, c in sorted(self.sources.items())}}
