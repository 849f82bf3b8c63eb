"""The pages in a real headless Chromium (Debian's `chromium`, driven by Playwright) against a
server on the tiny run. Each test saves a screenshot of its page: into $LMFORGE_SCREENSHOTS when
set (`make screenshots` writes docs/img/), else into the test's temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmf_serve_server import ServerThread

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# No sandbox (containers and CI run as root), no GPU, and nothing that phones home.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PAGES = {"runs": "/", "data": "/data", "tokenizer": "/tokenizer", "training": "/training", "playground": "/playground"}
TOKEN_TEXT = "The base model reads web pages.\n안녕하세요 👋🏽 — emoji and 한국어 split into bytes"


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is in the dev extra: pip install -e '.[dev]'")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (sudo apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh tab; console errors and uncaught exceptions are collected in ``page.errors``."""
    yield from _tab(browser, viewport={"width": 1280, "height": 860})


def _tab(browser, **context_options):
    context = browser.new_context(**context_options)
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: tab.errors.append(str(e)))
    tab.set_default_timeout(20_000)
    yield tab
    context.close()


def open_page(page, server, name: str, run: str = "tiny"):
    page.goto(f"{server.url}{PAGES[name]}?run={run}")
    page.wait_for_selector("body[data-ready]")
    assert page.locator(".notice.error").count() == 0, page.locator(".notice.error").all_inner_texts()


def screenshot(page, name: str, tmp_path: Path, keep_hover: bool = False) -> None:
    folder = Path(os.environ.get("LMFORGE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    if not keep_hover:
        page.mouse.move(0, 0)
    page.screenshot(path=str(folder / f"serve-{name}.png"), full_page=False)
    assert (folder / f"serve-{name}.png").stat().st_size > 5000


@pytest.mark.parametrize("name", list(PAGES))
def test_each_page_loads_without_console_errors(page, server, name):
    open_page(page, server, name)
    assert page.locator("header nav a.active").inner_text().lower() == name
    assert page.errors == []


def test_each_page_of_an_unfinished_run_says_what_to_run(page, server):
    for name in ("data", "tokenizer", "training", "playground"):
        open_page(page, server, name, run="partial")
        text = page.locator("main").inner_text()
        assert "lmforge run" in text, (name, text)
    assert page.errors == []


def test_runs_page_lists_runs_and_compares_two(page, server, runs_root, tmp_path):
    open_page(page, server, "runs")
    assert page.locator("#runs-table tbody tr").count() == 3
    clean = json.loads((runs_root / "tiny" / "stats" / "clean.json").read_text())
    row = page.locator("#runs-table tr[data-run=tiny] td")
    assert row.nth(3).inner_text() == f"{clean['docs']:,}"
    page.select_option("#compare-a", "tiny")
    page.select_option("#compare-b", "tiny-b")
    page.click("#compare")
    page.wait_for_selector("#compare-chart svg path")
    assert page.locator("#compare-chart path[data-series]").count() == 4  # train and val of each run
    screenshot(page, "runs", tmp_path)
    assert page.errors == []


def test_funnel_numbers_are_stats_clean_json(page, server, runs_root, tmp_path):
    clean = json.loads((runs_root / "tiny" / "stats" / "clean.json").read_text())
    open_page(page, server, "data")
    shown = lambda key: int(page.locator(f"[data-funnel='{key}']").first.inner_text().replace(",", ""))  # noqa: E731
    assert shown("records") == clean["records"] and shown("docs") == clean["docs"]
    for step, counts in clean["steps"].items():
        assert shown(f"{step}.in") == counts["in"] and shown(f"{step}.out") == counts["out"]
        for key, n in counts.items():
            if key.startswith("dropped_"):
                assert page.locator(f"[data-funnel='{step}.dropped.{key[8:]}']").get_attribute("data-count") == str(n)
    # a reason in the funnel opens the rejects it counts; a document shows its text and escaped raw HTML
    step, reason = next((s, k[8:]) for s, c in clean["steps"].items() for k in c if k.startswith("dropped_"))
    page.click(f"[data-funnel='{step}.dropped.{reason}']")
    page.wait_for_function("() => document.querySelectorAll('#doclist li[data-cursor]').length == %d" % clean["steps"][step][f"dropped_{reason}"])
    page.select_option("#kind", "docs")
    page.select_option("#step", "")
    page.select_option("#reason", "")
    page.wait_for_function("() => document.querySelectorAll('#doclist li[data-cursor]').length == %d" % min(25, clean["docs"]))
    page.click("#doclist li[data-cursor]")
    page.wait_for_selector("#doc-raw")
    assert "<html" in page.locator("#doc-raw").inner_text().lower()
    assert page.locator("#detail iframe, #detail script, #detail link").count() == 0  # shown as text, not rendered
    screenshot(page, "data", tmp_path)
    assert page.errors == []


def cli_show(tokenizer_dir: Path, text: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-m", "lmforge", "tokenizer", "show", "--json", "--tokenizer", str(tokenizer_dir), text],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def test_token_count_and_split_equal_tokenizer_show(page, server, runs_root, tmp_path):
    open_page(page, server, "tokenizer")
    page.fill("#text", TOKEN_TEXT)
    expected = cli_show(runs_root / "tiny" / "tokenizer", TOKEN_TEXT)
    count = page.locator("#out-a [data-role=count]")
    page.wait_for_function(f"() => document.querySelector('#out-a [data-role=count]').textContent == 'Token count: {expected['count']}'")
    assert count.inner_text() == f"Token count: {expected['count']}"
    spans = page.locator("#out-a [data-role=tokens] span")
    assert spans.evaluate_all("s => s.map(x => x.textContent)") == [t["text"] for t in expected["tokens"]]
    assert spans.evaluate_all("s => s.map(x => +x.dataset.id)") == expected["ids"]
    assert any("\\x" in t["text"] for t in expected["tokens"])  # the text does split a character
    page.check("#compare")
    page.select_option("#tok-b", "tiny-b")
    other = cli_show(runs_root / "tiny-b" / "tokenizer", TOKEN_TEXT)
    page.wait_for_function(f"() => (document.querySelector('#out-b [data-role=count]') || {{}}).textContent == 'Token count: {other['count']}'")
    screenshot(page, "tokenizer", tmp_path)
    assert page.errors == []


def generated(page, generation: int) -> list[str]:
    page.wait_for_selector(f"#samples[data-done='{generation}']")
    return page.locator("#samples .gen").evaluate_all("g => g.map(x => [...x.querySelectorAll('.g')].map(s => s.textContent).join(''))")


def test_playground_streams_tokens_and_a_seed_reproduces(page, server, tmp_path):
    open_page(page, server, "playground")
    page.fill("#seed", "42")
    page.fill("#n", "2")
    page.fill("#max_tokens", "24")
    page.click("#generate")
    first = generated(page, 1)
    assert len(first) == 2 and all(first) and first[0] != first[1]
    page.click("#generate")
    assert generated(page, 2) == first
    page.click("#again")  # the next seeds: other text
    assert page.input_value("#seed") == "44" and generated(page, 3) != first
    token = page.locator("#samples .g").first
    token.hover()
    tip = page.locator(".tip")
    assert tip.is_visible() and tip.locator("tr").count() == 5 and "p = " in tip.inner_text()
    screenshot(page, "playground", tmp_path, keep_hover=True)
    assert page.errors == []


def test_training_chart_gains_a_point_when_metrics_grow(page, server, runs_root, tmp_path):
    path = runs_root / "tiny-b" / "metrics.jsonl"
    original = path.read_bytes()
    try:
        open_page(page, server, "training", run="tiny-b")
        chart = page.locator("#chart-loss")
        before = int(chart.get_attribute("data-points"))
        assert before == sum(1 for line in original.splitlines() if b'"train"' in line or b'"val_loss"' in line)
        last = json.loads([x for x in original.splitlines() if b'"train"' in x][-1])
        with open(path, "ab") as f:
            f.write((json.dumps({**last, "step": last["step"] + 1, "loss": last["loss"] * 0.9}) + "\n").encode())
        page.wait_for_function(f"() => +document.querySelector('#chart-loss').dataset.points == {before + 1}", timeout=10_000)
        screenshot(page, "training", tmp_path)
    finally:
        path.write_bytes(original)
    assert page.errors == []


def test_few_shot_button_fills_the_prompt_and_the_room_left(page, server):
    open_page(page, server, "playground")
    page.click("#fewshot")
    page.wait_for_function("() => document.querySelector('#prompt').value.endsWith(':')")
    lines = page.input_value("#prompt").split("\n")
    assert len(lines) >= 3 and all(": " in line for line in lines[:-1])
    assert 1 <= int(page.input_value("#max_tokens")) < 48 and "examples" in page.inner_text("#gen-info")
    assert page.errors == []


# The main controls of each page: visible on a phone, inside the screen's width.
PHONE_CONTROLS = {"runs": ["header nav", "#run-picker", "#runs-table", "#compare"],
                  "data": ["#kind", "#q", "#doclist li[data-cursor]"],
                  "tokenizer": ["#text", "#out-a [data-role=count]", "#compare"],
                  "training": ["#chart-loss"],
                  "playground": ["#prompt", "#temperature", "#max_tokens", "#generate", "#fewshot"]}


@pytest.fixture
def phone(browser, server):
    yield from _tab(browser, viewport={"width": 390, "height": 844}, device_scale_factor=3, is_mobile=True,
                    has_touch=True)


def fits_the_screen(tab, name: str) -> list[int]:
    width = tab.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1] + 1, f"{name}: the page is {width[0]} px wide on a {width[1]} px screen"
    return width


@pytest.mark.parametrize("name", list(PAGES))
def test_each_page_fits_a_phone_screen(phone, server, name, tmp_path):
    open_page(phone, server, name)
    screen = fits_the_screen(phone, name)[1]
    for selector in PHONE_CONTROLS[name]:
        control = phone.locator(selector).first
        assert control.is_visible(), (name, selector)
        box = control.bounding_box()
        assert box["x"] >= -1 and box["x"] + box["width"] <= screen + 1, (name, selector, box)
    # what the page shows after its main action fits too
    if name == "tokenizer":
        phone.fill("#text", TOKEN_TEXT)
        phone.wait_for_selector("#out-a [data-role=tokens] span")
    elif name == "runs":
        phone.tap("#compare")
        phone.wait_for_selector("#compare-chart svg path")
    elif name == "data":
        phone.tap("#doclist li[data-cursor]")
        phone.wait_for_selector("#doc-raw")
    elif name == "playground":
        phone.fill("#max_tokens", "16")
        phone.tap("#generate")
        phone.wait_for_selector("#samples[data-done='1']")
        phone.locator("#samples .g").last.tap()  # a tap shows what hovering shows, inside the screen
        tip = phone.locator(".tip").bounding_box()
        assert phone.locator(".tip").is_visible() and tip["x"] >= 0 and tip["x"] + tip["width"] <= screen
    fits_the_screen(phone, name)
    phone.screenshot(path=str(tmp_path / f"serve-phone-{name}.png"))  # to look at; not one of the README's
    assert phone.errors == []


@pytest.fixture(scope="module")
def damaged_server(runs_root, tmp_path_factory):
    """A server over copies of the tiny run with a cut stats/clean.json, a cut Parquet file, and a
    metrics.jsonl with lines of other shapes (a NaN, a step that is not a number, a list)."""
    from lmforge.serve.app import create_app

    root = tmp_path_factory.mktemp("damaged")
    for name in ("stats-cut", "parquet-cut", "metrics-odd"):
        shutil.copytree(runs_root / "tiny", root / name)
    (root / "stats-cut" / "stats" / "clean.json").write_text('{"records": 3, "steps": {')
    docs = sorted((root / "parquet-cut" / "docs").glob("*.parquet"))[0]
    docs.write_bytes(docs.read_bytes()[:300])
    with open(root / "metrics-odd" / "metrics.jsonl", "ab") as f:
        f.write(b'{"kind": "train", "step": "x", "loss": 1}\n[1, 2]\n{"kind": "train", "step": 151, "loss": NaN}\n\xff\n')
    with ServerThread(create_app(root)) as running:
        yield running


@pytest.mark.parametrize("run, name, words", [
    ("stats-cut", "data", ["stats/clean.json", "--force clean"]), ("parquet-cut", "data", ["part-00000.parquet", "--force clean"]),
    ("stats-cut", "runs", ["stats/clean.json"]), ("metrics-odd", "training", []),
])
def test_a_damaged_run_shows_which_file_and_the_fix(page, damaged_server, run, name, words):
    page.goto(f"{damaged_server.url}{PAGES[name]}?run={run}")
    page.wait_for_selector("body[data-ready]")
    text = page.locator("main").inner_text()
    assert all(w in text for w in words), text[:500]
    uncaught = [e for e in page.errors if "Failed to load resource" not in e]  # a 409 is logged by the browser itself
    assert uncaught == []
    if name == "training":
        assert page.locator(".notice.error").count() == 0
        assert int(page.locator("#chart-loss").get_attribute("data-points")) > 100
