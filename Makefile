# Two commands do all set-up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HASH   := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
STAMP  := $(VENV)/.installed-$(HASH)
# The demo needs the package alone; tests and benches also need the dev extras (transformers, ray, ...).
DEMO_STAMP := $(VENV)/.installed-demo-$(HASH)
# torch is pinned here (the package accepts a range) so that the dev/CI path takes the CPU build.
TORCH  := torch==2.13.0

.PHONY: install demo demo-ko test bench python3-doc korean-help clean-runs screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,serve]'
	rm -f $(VENV)/.installed-* && touch $@ $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[serve]'
	rm -f $(VENV)/.installed-demo-* && touch $@

install: $(STAMP)

# The demo website is Debian's Python documentation, served on 127.0.0.1.
python3-doc:
	@if ls /usr/share/doc/python3*/html/index.html >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-doc; \
	else echo "python3-doc is missing; install it with:  sudo apt-get install python3-doc"; exit 1; fi

demo: $(DEMO_STAMP) python3-doc
	$(BIN)/lmforge run configs/demo.toml
	@echo ""
	@echo "See every stage in the browser:  $(BIN)/lmforge serve runs/demo   (then open http://127.0.0.1:8600/)"

# The Korean websites of demo-ko: LibreOffice's Korean help (Debian's libreoffice-help-ko) and
# the Korean Debian FAQ (debian-faq-ko), unpacked into data/ without installing them
# (apt-get download + dpkg -x need no root); the demo serves them on 127.0.0.1 and crawls them.
korean-help:
	@for pkg in libreoffice-help-ko debian-faq-ko; do \
		if [ -d data/$$pkg/usr ]; then continue; fi; \
		tmp=$$(mktemp -d) && (cd $$tmp && apt-get download $$pkg) && \
		mkdir -p data/$$pkg.tmp && dpkg -x $$tmp/$${pkg}_*.deb data/$$pkg.tmp && \
		mv data/$$pkg.tmp data/$$pkg && rm -rf $$tmp || exit 1; done

demo-ko: $(DEMO_STAMP) python3-doc korean-help
	$(BIN)/lmforge run configs/demo-ko.toml

test: install python3-doc
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

bench: install python3-doc
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The README's pictures of `lmforge serve`: the browser tests, saving their screenshots in docs/img/.
# Korean and emoji need fonts to show in the pictures (the tests themselves do not).
screenshots: install python3-doc
	@if [ "$$(id -u)" = 0 ] && ! fc-list | grep -qi "noto sans cjk"; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk fonts-noto-color-emoji; fi
	LMFORGE_SCREENSHOTS=docs/img OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q tests/serve/test_serve_browser.py

clean-runs:
	rm -rf runs/
