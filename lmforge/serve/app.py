"""The HTTP app: a JSON API over the runs folder, SSE for generation, and the static pages.

    app = create_app("runs")        # then uvicorn.run(app, host="127.0.0.1", port=8600)

Every error is JSON ``{"error": "..."}`` with a 4xx status; nothing from the run directory is
executed or unpickled (Parquet, JSON, TOML, WARC and safetensors are read as data).
"""

# No `from __future__ import annotations` here: FastAPI reads the request models' annotations at run time.
import json
import threading
from pathlib import Path

from lmforge.errors import LmforgeError
from lmforge.serve import runs as runs_mod
from lmforge.serve.documents import FILTERS, KINDS, BadRequest, DocumentBrowser, WarcIndex
from lmforge.serve.generation import (Busy, GenerationQueue, ModelCache, Settings, check_settings, few_shot_prompt,
                                     is_utf8)
from lmforge.serve.runs import NotFound, RunsFolder, ServedRun

STATIC = Path(__file__).parent / "static"
PAGES = {"/": "index.html", "/data": "data.html", "/tokenizer": "tokenizer.html", "/training": "training.html",
         "/playground": "playground.html"}
MAX_PAGE_SIZE = 200
MAX_QUERY_CHARS = 200
MAX_TOKENIZER_CHARS = 100_000
# Pages load only their own files: no inline script, nothing from elsewhere (a raw page of the crawl
# is shown as text, but this is a second fence).
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"
STATUS = {NotFound: 404, BadRequest: 422, Busy: 429}


def create_app(root: str | Path, max_generations: int = 2, max_waiting: int = 8):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException

    folder = RunsFolder(root)
    app = FastAPI(title="lmforge", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.folder, app.state.browser, app.state.warcs = folder, DocumentBrowser(), WarcIndex()
    app.state.models, app.state.queue = ModelCache(), GenerationQueue(max_generations, max_waiting)
    app.state.tokenizers = TokenizerCache()

    @app.exception_handler(LmforgeError)
    async def _lmforge_error(request: Request, exc: LmforgeError):
        return JSONResponse({"error": str(exc)}, status_code=_status(exc))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):  # no such route, method or static file; a body not read
        return JSONResponse({"error": f"{request.method} {request.url.path[:200]}: {exc.detail}"}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # a last fence: JSON, and the server's log has the rest
        return JSONResponse({"error": f"{request.url.path[:200]}: unexpected {type(exc).__name__}; the server's log has "
                                      "the details"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    for route, name in PAGES.items():
        app.add_api_route(route, _page(FileResponse, STATIC / name), methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_run_routes(app)
    _add_tool_routes(app)
    return app


def _status(exc: LmforgeError) -> int:
    for cls, code in STATUS.items():
        if isinstance(exc, cls):
            return code
    return 409  # the run is not in a state to answer yet (e.g. no checkpoint): the message says how to fix it


def _page(file_response, path: Path):
    def page():
        return file_response(path, headers={"Cache-Control": "no-cache"})
    return page


def _add_run_routes(app) -> None:
    from fastapi import Query

    @app.get("/api/runs")
    def list_runs():
        folder = app.state.folder
        return {"root": str(folder.root),
                "runs": [runs_mod.run_summary(n, ServedRun(p, folder.root)) for n, p in folder.runs().items()]}

    @app.get("/api/runs/{run}")
    def run_detail(run: str):
        rd = app.state.folder.get(run)
        return {**runs_mod.run_summary(run, rd), **runs_mod.training_plan(rd),
                "has_crawl": bool(_warcs(rd)), "has_tokenizer": bool(rd.files(rd.tokenizer, "tokenizer.json")),
                "has_checkpoint": bool(rd.files(rd.checkpoints, "step_*"))}

    @app.get("/api/runs/{run}/funnel")
    def funnel(run: str):
        return runs_mod.funnel(app.state.folder.get(run))

    @app.get("/api/runs/{run}/facets")
    def facets(run: str):
        rd = app.state.folder.get(run)
        clean = runs_mod.clean_stats(rd) if (rd.stats / "clean.json").exists() else {}
        reasons = {}
        for step, counts in (clean.get("steps") or {}).items():
            found = [k.removeprefix("dropped_") for k in counts if k.startswith("dropped_")]
            if found:
                reasons[step] = found
        return {"steps": list(reasons), "reasons": reasons, "sources": sorted(str(s) for s in clean.get("sources") or {}),
                "languages": app.state.browser.languages(rd.files(rd.docs, "*.parquet"))}

    @app.get("/api/runs/{run}/documents")
    def documents(run: str, kind: str = "docs", q: str = "", cursor: str | None = None,
                  offset: int = Query(0, ge=0), size: int = Query(50, ge=1, le=MAX_PAGE_SIZE),
                  step: str = "", reason: str = "", source: str = "", language: str = ""):
        rd = app.state.folder.get(run)
        if len(q) > MAX_QUERY_CHARS:
            raise BadRequest(f"search text is {len(q)} characters; at most {MAX_QUERY_CHARS}")
        filters = dict(zip(FILTERS, (step, reason, source, language)))
        return app.state.browser.page(_kind_files(rd, kind), filters, q, cursor, offset, size)

    @app.get("/api/runs/{run}/document")
    def document(run: str, cursor: str, kind: str = "docs"):
        rd = app.state.folder.get(run)
        doc = app.state.browser.document(_kind_files(rd, kind), cursor)
        doc["has_raw"] = bool(_warcs(rd)) and str(doc.get("id", "")).startswith("<urn:")
        return doc

    @app.get("/api/runs/{run}/raw")
    def raw(run: str, id: str = Query(..., max_length=200)):
        rd = app.state.folder.get(run)
        return app.state.warcs.raw_html(_warcs(rd), id)

    @app.get("/api/runs/{run}/metrics")
    def metrics(run: str, offset: int = Query(0, ge=0)):
        rd = app.state.folder.get(run)
        tail = runs_mod.metrics_tail(rd, offset)
        plan = runs_mod.training_plan(rd)
        train_rows = [r for r in tail["rows"] if r.get("kind") == "train"]
        return {**tail, **plan, "eta_s": runs_mod.eta_seconds(train_rows, plan["max_steps"]),
                "train_state": next((s["state"] for s in runs_mod.stage_states(rd) if s["stage"] == "train"), None)}


def _kind_files(rd: ServedRun, kind: str) -> list[Path]:
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}")
    return rd.files(rd.docs if kind == "docs" else rd.rejects, "*.parquet")


def _warcs(rd: ServedRun) -> list[Path]:
    return rd.files(rd.crawl, *WarcIndex.PATTERNS)


def _refuse(problems: list[str]) -> None:
    if problems:
        raise BadRequest("; ".join(problems))


def _add_tool_routes(app) -> None:
    from fastapi import Query, Request
    from typing import Annotated

    from fastapi.responses import StreamingResponse
    from pydantic import BaseModel, Strict

    # Strict: true is not 1 and 1.5 is not an int (an int is still a float).
    Int, Float = Annotated[int, Strict()], Annotated[float, Strict()]

    class TokenizeBody(BaseModel):
        run: str
        text: str

    class GenerateBody(BaseModel):
        prompt: str
        max_tokens: Int = 64
        temperature: Float = 0.8
        top_k: Int = 50
        top_p: Float = 1.0
        seed: Int | None = None
        n: Int = 1

    @app.post("/api/tokenize")
    def tokenize(body: TokenizeBody):
        from lmforge.tokenizer.show import show_tokens

        if len(body.text) > MAX_TOKENIZER_CHARS:
            raise BadRequest(f"text is {len(body.text)} characters; the tokenizer view takes at most {MAX_TOKENIZER_CHARS}")
        if not is_utf8(body.text):
            raise BadRequest("text has a lone UTF-16 surrogate (e.g. \\ud800), which is not text; send whole characters")
        tok = app.state.tokenizers.get(app.state.folder.get(body.run))
        view = show_tokens(tok, body.text)  # exactly `lmforge tokenizer show --json`
        n_bytes = len(body.text.encode("utf-8"))
        return {**view, "bytes": n_bytes, "bytes_per_token": round(n_bytes / view["count"], 3) if view["count"] else None,
                "vocab_size": tok.vocab_size}

    @app.get("/api/runs/{run}/fewshot")
    async def fewshot(run: str, max_tokens: int = Query(32, ge=1)):
        import asyncio

        rd = app.state.folder.get(run)
        loaded = await asyncio.to_thread(app.state.models.get, rd)
        if max_tokens > loaded.seq_len:
            raise BadRequest(f"max_tokens must be 1..{loaded.seq_len} (at most the model's context length)")
        return await asyncio.to_thread(few_shot_prompt, rd, loaded.seq_len, loaded.tokenizer, max_tokens)

    @app.post("/api/runs/{run}/generate")
    async def generate(run: str, body: GenerateBody, request: Request):
        import asyncio

        rd = app.state.folder.get(run)
        settings = Settings(**body.model_dump())
        _refuse(check_settings(settings, seq_len=None))  # before touching the model
        loaded = await asyncio.to_thread(app.state.models.get, rd)
        _refuse(check_settings(settings, loaded.seq_len))
        app.state.queue.check_room()
        events = app.state.queue.stream(loaded, settings)

        async def sse():
            try:
                async for event in events:
                    yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
            finally:
                await events.aclose()

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/api/status")
    def status():
        q = app.state.queue
        return {"generations_running": q.running, "generations_waiting": q.waiting, "tokens_generated": q.tokens,
                "max_generations": q.max_running}


class TokenizerCache:
    """One loaded tokenizer per run, reloaded when its file changes."""

    def __init__(self):
        self._cache: dict[Path, tuple[int, object]] = {}
        self._lock = threading.Lock()

    def get(self, rd):
        from lmforge.tokenizer.bpe import Tokenizer

        path = rd.inside(rd.inside(rd.tokenizer) / "tokenizer.json")
        if not path.is_file():
            raise LmforgeError(f"{rd.root.name} has no tokenizer yet; make it with `lmforge run {rd.config} --until tokenizer`")
        mtime = path.stat().st_mtime_ns
        with self._lock:
            hit = self._cache.get(path)
            if hit and hit[0] == mtime:
                return hit[1]
        tok = Tokenizer.load(rd.tokenizer)
        with self._lock:
            self._cache[path] = (mtime, tok)
        return tok
