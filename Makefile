# crmbot: the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TEMPLATES := agents/templates

.PHONY: run test install install-test system-deps lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## run: install, migrate, import the shipped agents (keeping edited ones), start the bot
run: install
	$(BIN)/crmbot db upgrade
	$(BIN)/crmbot agent import --keep-existing $(TEMPLATES)
	$(BIN)/crmbot run

## test: install what the tests need and run the whole suite (also on PostgreSQL when
## TEST_DATABASE_URL is set), in one pytest worker per core, at most 4; PYTEST_WORKERS=0 runs
## it in this process. Our byte-code is compiled first: the suite starts `crmbot` well over
## a hundred times, and where PYTHONDONTWRITEBYTECODE is set each start would compile all
## of our modules again (a fifth of its start-up time).
PYTEST_WORKERS ?= auto
test: install-test system-deps
	$(BIN)/python -m compileall -q bot agents channels scheduler
	$(BIN)/pytest -n $(PYTEST_WORKERS) --maxprocesses=4 --dist worksteal

## system-deps: what the email tests start besides Python: Dovecot (Debian's dovecot-imapd)
## and the openssl command. Installed with apt-get as root when missing; anywhere else this
## only says what is missing, and the tests that need it are skipped with that reason.
system-deps:
	@if [ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null 2>&1; then \
		command -v openssl >/dev/null 2>&1 || echo "system-deps: no openssl; TLS tests skip"; \
	elif ! command -v apt-get >/dev/null 2>&1 || [ "$$(id -u)" != 0 ]; then \
		echo "system-deps: install dovecot-imapd and openssl (as root: apt-get install" \
			"dovecot-imapd openssl); until then the email tests that need them are skipped"; \
	else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends dovecot-imapd openssl; \
	fi

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test,bench]"
	touch $(VENV)/.installed $(VENV)/.installed-test $@

## lint: ruff, mypy --strict, and the import contracts (layers, SQL only in the store)
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## bench: every benchmark, on SQLite (and PostgreSQL when TEST_DATABASE_URL is set);
## writes bench/results/latest.md and bench/results/latest.png
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
