"""`lmforge serve`: every stage of a run in the browser (runs, data, tokenizer, training, playground).

app.py is the HTTP API and the static pages; runs.py, documents.py and generation.py read a run
directory's documented artifacts (docs/architecture.md) and nothing else.
"""
