"""Config of the sample stage."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SampleConfig:
    """``[sample]``: continuations printed at the end of a run and put in the report."""

    prompts: list[str] = field(default_factory=lambda: ["The "])
    num_samples: int = 3
    """Continuations per prompt."""
    max_new_tokens: int = 64
    temperature: float = 0.8
    """0 = greedy (deterministic)."""
    top_k: int = 50
    """0 = no top-k cut."""
    top_p: float = 1.0
    seed: int = 1234

    def validate(self) -> list[str]:
        problems = []
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            problems.append("temperature must be >= 0, top_p in (0, 1], top_k >= 0")
        if self.num_samples < 1 or self.max_new_tokens < 1:
            problems.append("num_samples and max_new_tokens: must be at least 1")
        return problems
