"""The two-language demo (configs/demo-ko.toml), tiny: an English site and real pages of
LibreOffice's Korean help (tests/e2e/data/ko-site), both served on 127.0.0.1 and crawled, each
page cleaned with its language's rules, one tokenizer, a mixture with an epoch cap."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lmforge.clean.document import Document
from lmforge.clean.steps import step_class
from lmforge.config import config_from_dict
from lmforge.pipeline import run_pipeline
from tiny_site import build_site

ROOT = Path(__file__).resolve().parents[2]
KO_SITE = Path(__file__).parent / "data" / "ko-site"
KO_PAGES = sorted(p.relative_to(KO_SITE).as_posix() for p in KO_SITE.rglob("*.html"))
KO_EPOCHS = 0.25
pytestmark = pytest.mark.slow


def tiny_demo_ko(english_root: Path, runs: Path):
    """configs/demo-ko.toml with the tiny sites, a tiny model and a few steps."""
    data = tomllib.loads((ROOT / "configs" / "demo-ko.toml").read_text(encoding="utf-8"))
    data.update(runs_dir=str(runs), model={"n_layer": 2, "n_head": 2, "n_embd": 64, "seq_len": 64})
    data["collect"].update(demo_root=str(english_root), max_pages=200, concurrency=4, per_host_concurrency=4,
                           local_sites=[{"root": str(KO_SITE), "source": "ko"}])
    data["clean"]["workers"] = 1
    data["clean"]["gopher_quality"]["min_words"] = 20
    data["clean"]["gopher_repetition"] = {f"dup_{n}gram_char_frac": 0.5 for n in range(5, 11)}
    data["tokenizer"].update(vocab_size=400, val_fraction=0.3, workers=1)
    data["train"].update(max_steps=30, batch_size=8, eval_every=15, eval_batches=2, checkpoint_every=0, threads=1,
                         warmup_steps=5, mixture={"web": 0.5, "ko": 0.5}, epochs={"ko": KO_EPOCHS})
    data["sample"].update(num_samples=1, max_new_tokens=8)
    return config_from_dict(data, "demo-ko (tiny)")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    english = tmp_path_factory.mktemp("english")
    build_site(english)
    rd = run_pipeline(tiny_demo_ko(english, tmp_path_factory.mktemp("runs")), log=lambda m: None)
    return rd, json.loads((rd.crawl / "sources.json").read_text())


def test_both_sites_are_crawled_and_each_page_has_its_sites_source(run):
    rd, sites = run
    assert sorted(sites.values()) == ["ko", "web"]
    ko_base = next(base for base, source in sites.items() if source == "ko")
    rows = pq.read_table(rd.docs).to_pylist() + pq.read_table(rd.rejects).to_pylist()
    ko_urls = {r["url"] for r in rows if r["source"] == "ko"}
    # the generated index at "/" links the help pages, whose table of contents is JavaScript
    assert {ko_base + page for page in KO_PAGES} <= ko_urls
    assert all(u.startswith(ko_base) for u in ko_urls)
    assert all(r["source"] == "web" for r in rows if not r["url"].startswith(ko_base))


def test_korean_pages_kept_that_english_settings_would_drop(run):
    rd, _ = run
    docs = pq.read_table(rd.docs).to_pylist()
    korean = [d for d in docs if d["source"] == "ko" and d["language"] == "ko"]
    assert len(korean) == len(KO_PAGES)  # every help page, with its Korean text
    assert any("공동 작업" in d["text"] for d in korean)
    english_rule = step_class("gopher_quality")()
    dropped = [english_rule.filter(Document("d", d["url"], "ko", d["text"], language="en")) for d in korean]
    assert any(v is not True and v[1] == "stop_words" for v in dropped), dropped
    assert {d["language"] for d in docs if d["source"] == "web"} == {"en"}


def test_report_shows_both_funnels_bytes_per_token_per_language_and_epochs(run):
    rd, _ = run
    clean = rd.read_stats("clean")
    funnels = clean["source_steps"]
    assert set(funnels) == {"web", "ko"}
    assert clean["sources"]["ko"]["docs_ko"] == len(KO_PAGES)
    for source, steps in funnels.items():  # each funnel adds up: what a step lets out enters the next
        names = list(steps)
        assert steps[names[0]]["in"] == clean["sources"][source]["records"]
        assert all(steps[a]["out"] == steps[b]["in"] for a, b in zip(names, names[1:]))
        assert steps[names[-1]]["out"] == clean["sources"][source]["docs"]
    languages = rd.read_stats("tokenize")["languages"]
    assert set(languages) == {"en", "ko"}
    # Hangul is 3 bytes a syllable in UTF-8: a small byte-level BPE packs more bytes per Korean token
    assert all(e["bytes_per_token"] > 1 for e in languages.values())
    sources = rd.read_stats("train")["sources"]
    assert sources["ko"]["declared_epochs"] == KO_EPOCHS and sources["web"]["declared_epochs"] is None
    assert sources["ko"]["epochs"] == pytest.approx(KO_EPOCHS, abs=0.05)  # the cap is reached, not passed
    assert sources["ko"]["tokens_seen"] == pytest.approx(KO_EPOCHS * sources["ko"]["tokens"], rel=0.2)
    report = rd.report.read_text(encoding="utf-8")
    assert "### Source web" in report and "### Source ko" in report and "ko: " in report
    assert f"| ko | {languages['ko']['documents']} |" in report
    assert f"| {KO_EPOCHS} | {sources['ko']['epochs']} |" in report and "| no cap |" in report
