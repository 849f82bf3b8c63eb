"""report.md and loss.png: a human summary of a run, built only from the run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lmforge.errors import LmforgeError
from lmforge.rundir import RunDir, atomic_path, write_text_atomic

STAGE_ORDER = ("crawl", "clean", "tokenizer", "tokenize", "train", "sample")


def run_stage(cfg, rd: RunDir) -> dict:
    path = write_report(rd.root)
    return {"report": str(path)}


def write_report(run_dir: str | Path) -> Path:
    rd = RunDir(Path(run_dir))
    if not rd.root.is_dir():
        raise LmforgeError(f"{rd.root}: no such run directory (run `lmforge run CONFIG` first)")
    metrics = read_metrics(rd.metrics)
    plot = rd.root / "loss.png"
    vocab = (rd.read_stats("tokenizer") or {}).get("vocab_size")
    has_plot = plot_losses(metrics, plot, baseline=math.log(vocab) if vocab else None)
    parts = [f"# Run report: {rd.root.name}\n"]
    parts += _funnel_section(rd)
    parts += _tokens_section(rd)
    parts += _training_section(rd, metrics, plot.name if has_plot else None)
    parts += _samples_section(rd)
    parts += _stage_stats_section(rd)
    write_text_atomic(rd.report, "\n".join(parts) + "\n")
    return rd.report


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash: the rest of the log is still worth showing
    return rows


def plot_losses(metrics: list[dict], out: Path, baseline: float | None = None) -> bool:
    train = [(m["step"], m["loss"]) for m in metrics if m.get("kind") == "train" and "loss" in m]
    val = [(m["step"], m["val_loss"]) for m in metrics if m.get("kind") == "val" and "val_loss" in m]
    if not train and not val:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    if baseline:
        ax.axhline(baseline, linestyle="--", color="grey", linewidth=1, label="uniform guess, ln(vocab)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True


def _funnel_section(rd: RunDir) -> list[str]:
    crawl, clean = rd.read_stats("crawl"), rd.read_stats("clean")
    lines = ["## Data\n"]
    if crawl and not crawl.get("skipped"):
        lines.append(f"Crawled {_get(crawl, 'fetched')} pages ({_get(crawl, 'bytes')} bytes) in "
                     f"{_get(crawl, 'crawl_seconds', 'seconds')} s; robots.txt blocked {_get(crawl, 'robots_blocked')}.\n")
    steps = (clean or {}).get("steps") or {}
    if steps:
        lines.append(f"Clean kept {_get(clean, 'docs')} of {_get(clean, 'records')} records "
                     f"({_get(clean, 'bytes_out')} bytes of text); rejects with their reasons are in rejects/.\n")
        lines += _funnel_table(steps)
    by_source = (clean or {}).get("source_steps") or {}
    if len(by_source) > 1:
        for source, source_steps in by_source.items():
            counts = (clean.get("sources") or {}).get(source, {})
            languages = ", ".join(f"{k[5:]}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
                                  if k.startswith("docs_"))
            lines.append(f"### Source {source}: kept {counts.get('docs', 0)} of {counts.get('records', 0)} records "
                         f"({counts.get('bytes_out', 0)} bytes of text; by language: {languages or '-'})\n")
            lines += _funnel_table(source_steps)
    return lines


def _funnel_table(steps: dict) -> list[str]:
    timed = any("seconds" in c for c in steps.values())  # a source's funnel has no time of its own
    lines = ["| step | in | out | dropped (reason: count) |" + (" seconds |" if timed else ""),
             "|---|---:|---:|---|" + ("---:|" if timed else "")]
    for name, counts in steps.items():
        dropped = ", ".join(f"{k.removeprefix('dropped_')}: {v}" for k, v in counts.items()
                            if k.startswith("dropped_")) or "-"
        lines.append(f"| {name} | {counts.get('in')} | {counts.get('out')} | {dropped} |"
                     + (f" {counts.get('seconds', '')} |" if timed else ""))
    return lines + [""]


def _tokens_section(rd: RunDir) -> list[str]:
    tok, shards = rd.read_stats("tokenizer"), rd.read_stats("tokenize")
    if not tok and not shards:
        return []
    lines = ["## Tokens\n"]
    if tok:
        lines.append(f"Tokenizer: vocab size {_get(tok, 'vocab_size')}, trained on {_get(tok, 'train_bytes', 'bytes')} bytes.\n")
    if shards:
        lines.append(f"Shards: {_get(shards, 'tokens')} tokens from {_get(shards, 'documents')} documents, "
                     f"{_get(shards, 'bytes_per_token')} bytes/token.\n")
    languages = (shards or {}).get("languages") or {}
    if languages:
        split = next(iter(languages.values())).get("split", "val")
        lines += [f"Bytes per token by language ({'held-out' if split == 'val' else 'all'} documents):\n",
                  "| language | documents | bytes | tokens | bytes/token |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {lang} | {e['documents']} | {e['bytes']} | {e['tokens']} | {e['bytes_per_token']} |"
                  for lang, e in languages.items()]
        lines.append("")
    return lines


def _training_section(rd: RunDir, metrics: list[dict], plot: str | None) -> list[str]:
    train = [m for m in metrics if m.get("kind") == "train"]
    val = [m for m in metrics if m.get("kind") == "val"]
    if not train:
        return []
    stats = rd.read_stats("train") or {}
    lines = ["## Training\n"]
    vocab = (rd.read_stats("tokenizer") or {}).get("vocab_size")
    baseline = f" (uniform baseline ln(vocab) = {math.log(vocab):.3f})" if vocab else ""
    params = f"{stats['params']:,}-parameter model, " if stats.get("params") else ""
    lines.append(f"{params}{train[-1]['step']} steps, {train[-1].get('tokens', '?'):,} tokens; "
                 f"final train loss {train[-1]['loss']:.3f}{baseline}.")
    if val:
        first, last = val[0], val[-1]
        lines.append(f"Validation loss {first['val_loss']:.3f} at step {first['step']} -> {last['val_loss']:.3f} "
                     f"at step {last['step']}" + (f", {last['val_bpb']:.3f} bits/byte." if last.get("val_bpb") else "."))
    speeds = sorted(m["tok_per_s"] for m in train if m.get("tok_per_s"))
    if speeds:
        lines.append(f"Median throughput {speeds[len(speeds) // 2]:,.0f} tokens/s.")
    lines += _mixture_lines(stats.get("sources") or {})
    if plot:
        lines.append(f"\n![loss curve]({plot})")
    return lines + [""]


def _mixture_lines(sources: dict) -> list[str]:
    """Declared vs realised epochs per source (realised: tokens seen / the source's train tokens)."""
    if not sources:
        return []
    lines = ["\nData mixture (epochs: tokens of the source seen by training / its train tokens):\n",
             "| source | weight | train tokens | tokens seen | declared epochs | realised epochs |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, e in sources.items():
        declared = "no cap" if e.get("declared_epochs") is None else e["declared_epochs"]
        lines.append(f"| {name} | {e['weight']} | {e['tokens']} | {e['tokens_seen']} | {declared} | {e['epochs']} |")
    return lines


def _samples_section(rd: RunDir) -> list[str]:
    if not rd.samples.exists():
        return []
    data = json.loads(rd.samples.read_text(encoding="utf-8"))
    lines = ["## Samples\n", f"Settings: {json.dumps(data.get('settings', {}))}\n"]
    for item in data.get("prompts", []):
        for i, text in enumerate(item.get("samples", []), 1):
            lines.append(f"**{i}.** `{item['prompt']!r}` →\n\n```text\n{item['prompt']}{text}\n```\n")
    return lines


def _stage_stats_section(rd: RunDir) -> list[str]:
    lines = ["## Stage counters\n"]
    for stage in STAGE_ORDER:
        stats = rd.read_stats(stage)
        if stats:
            lines.append(f"- **{stage}**: {_flat_summary(stats)}")
    return lines + [""]


def _flat_summary(stats: dict, limit: int = 24) -> str:
    flat = list(_flatten(stats))
    text = ", ".join(f"{k}={v}" for k, v in flat[:limit])
    return text + (f", … ({len(flat) - limit} more in stats/)" if len(flat) > limit else "")


def _flatten(data, prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float, str, bool)):
            yield f"{prefix}{key}", value


def _get(stats: dict, *keys: str):
    for key in keys:
        if key in stats:
            return stats[key]
    return "?"
