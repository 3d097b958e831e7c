# Two commands on a fresh machine: `make run` (install, migrate, serve on 127.0.0.1:8000)
# and `make test` (install with test tools, run the suite). Python 3.11+ required.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# The stamp is rebuilt whenever pyproject.toml changes, so `make` reinstalls only then.
STAMP  := $(VENV)/.installed-dev

.PHONY: install run migrate test test-mariadb lint typecheck openapi clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/ocupredict migrate

run: install migrate
	$(BIN)/ocupredict serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The same suite against the MariaDB on this machine (a dedicated test database).
test-mariadb: install
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-mysql+aiomysql://root@127.0.0.1:3306/ocupredict_test} \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy app

openapi: install
	$(BIN)/ocupredict openapi --output docs/openapi.json

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
