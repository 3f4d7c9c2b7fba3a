# OpsPortal: `make run` to try it, `make test` to prove it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run test lint format setup bench clean-var

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found). On Debian/Ubuntu: apt-get install python3.11 python3.11-venv"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install -q -r requirements-dev.txt
	@touch $@

# The try-out signs in with a password only (two-factor is optional while DEBUG is on; turn
# it on with OPSPORTAL_REQUIRE_2FA=true). The Fernet key (32 random bytes, url-safe base64)
# keeps stored secrets readable if SECRET_KEY changes.
.env:
	@echo "Creating .env for a local try-out (DEBUG on, a fresh SECRET_KEY and secrets key); see .env.example."
	@printf 'DEBUG=true\nSECRET_KEY=%s\nSECRETS_ENCRYPTION_KEYS=%s\n' \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" \
		"$$($(PYTHON) -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')" > .env

setup: $(VENV)/.runtime .env
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py load_defaults
	$(BIN)/python manage.py ensure_admin
	$(BIN)/python manage.py collectstatic --no-input -v 0

# supervisord runs web, worker and beat (deploy/supervisord.conf): a worker or beat that dies
# is started again while the web keeps serving; Ctrl-C stops all three. Its socket, pid file
# and log go to RUN_DIR (`OPSPORTAL_RUN_DIR=var/run .venv/bin/supervisorctl -c
# deploy/supervisord.conf status` lists the processes).
RUN_DIR ?= $(CURDIR)/var/run
run: setup
	@mkdir -p $(RUN_DIR)
	@echo
	@echo "  OpsPortal is starting: open http://$(HOST):$(PORT)/admin/  (Ctrl-C stops web, worker and beat)"
	@echo
	OPSPORTAL_RUN_DIR=$(RUN_DIR) $(BIN)/supervisord -c deploy/supervisord.conf

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Migrations must match the models: a model change without its migration fails here, before
# the services start or the suite runs (it needs no database; without one Django only warns).
# The API's OpenAPI schema must generate with no warning and validate (issue 12).
test: $(VENV)/.dev lint
	set -a && . deploy/dev/test.env && set +a && $(BIN)/python manage.py makemigrations --check --dry-run
	set -a && . deploy/dev/test.env && set +a && $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null
	deploy/dev/test-services.sh
	set -a && . deploy/dev/test.env && set +a && $(BIN)/pytest $(PYTEST_ARGS)

bench: $(VENV)/.dev
	deploy/dev/test-services.sh
	set -a && . deploy/dev/test.env && set +a && for b in bench/*.py; do $(BIN)/python $$b || exit 1; done
