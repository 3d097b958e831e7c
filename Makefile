# Two commands on a fresh machine: `make run` (install, migrate, serve on 127.0.0.1:8000)
# and `make test` (install with test tools, run the suite). Python 3.11+ required.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# The stamp is rebuilt whenever pyproject.toml changes, so `make` reinstalls only then.
STAMP  := $(VENV)/.installed-dev

.PHONY: install run migrate test test-mariadb test-galera lint typecheck openapi client openapi-lint e2e-node e2e clean web web-check web-if-node

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/ocupredict migrate

run: install migrate web-if-node
	$(BIN)/ocupredict serve --host $(HOST) --port $(PORT)

# The Galera tests start a 3-node cluster of their own: `make test-galera` runs them.
test: install
	$(BIN)/python -m pytest -m "not galera" $(PYTEST_ARGS)

# The same suite against the MariaDB on this machine (a dedicated test database).
test-mariadb: install
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-mysql+aiomysql://root@127.0.0.1:3306/ocupredict_test} \
		$(BIN)/python -m pytest -m "not galera" $(PYTEST_ARGS)

# Writers on two nodes of a 3-node MariaDB Galera cluster that the tests start on loopback
# (app/deploy/galera.py; needs root, mariadbd and galera-4; skipped, saying why, without).
test-galera: install
	$(BIN)/python -m pytest -m galera tests/test_galera.py $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy app

# The committed schema snapshot the TypeScript client is generated from. Written with the
# default settings whatever the environment (no .env, API_PREFIX unset), keys sorted.
openapi: install
	cd docs && env -u API_PREFIX ENVIRONMENT=development \
		$(abspath $(BIN))/ocupredict openapi --output openapi.json

# TypeScript client package (clients/typescript, @ocupredict/client): Node packages from
# its lock file, generated from docs/openapi.json with @hey-api/openapi-ts, type-checked
# with tsc --strict, compiled to dist/ (JS + .d.ts) and packed by npm pack into
# clients/typescript/ocupredict-client-<version>.tgz (the version follows pyproject.toml).
NPM_DIR  := clients/typescript
NODE_E2E := e2e/node
$(NPM_DIR)/node_modules/.package-lock.json: $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	cd $(NPM_DIR) && npm ci --no-audit --no-fund
	touch $@

$(NODE_E2E)/node_modules/.package-lock.json: $(NODE_E2E)/package.json $(NODE_E2E)/package-lock.json
	cd $(NODE_E2E) && npm ci --no-audit --no-fund
	touch $@

client: $(NPM_DIR)/node_modules/.package-lock.json
	cd $(NPM_DIR) && npm run generate && npm run typecheck && npm run build
	cd $(NPM_DIR) && rm -f ocupredict-client-*.tgz && npm pack --silent

# The schema against Redocly's rules (redocly.yaml; exceptions in .redocly.lint-ignore.yaml).
openapi-lint: $(NPM_DIR)/node_modules/.package-lock.json
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
		$(NPM_DIR)/node_modules/.bin/redocly lint docs/openapi.json --format=stylish

# The e2e consumer (e2e/node) installs the packed tarball the way a front-end would, then
# type-checks (including the type-level tests of the error codes) and compiles its scripts.
e2e-node: client $(NODE_E2E)/node_modules/.package-lock.json
	cd $(NODE_E2E) && npm install --no-save --no-audit --no-fund ../../$(NPM_DIR)/ocupredict-client-*.tgz
	cd $(NODE_E2E) && npm run typecheck && npm run build

# The contract proven by real clients against a live server (uvicorn + aiosmtpd on
# loopback): the Node flow with the installed package, Swagger UI in headless Chromium
# (Debian's /usr/bin/chromium), a Python client generated from the live schema by
# openapi-python-client, schemathesis over every operation, and the web app's Playwright
# suite (web/e2e) in the same Chromium, through nginx and through `ocupredict serve`.
# See e2e/run.py.
e2e: install openapi-lint e2e-node web
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_openapi_snapshot.py
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python e2e/run.py

# The doctors' web app (web/): React + TypeScript + Vite on the @ocupredict/client package
# (a file: dependency on clients/typescript, built by `make client`), built to web/dist,
# which the app (and nginx under serve-nginx) serves at /.
WEB_DIR := web
$(WEB_DIR)/node_modules/.package-lock.json: $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	cd $(WEB_DIR) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $@

web: client $(WEB_DIR)/node_modules/.package-lock.json
	cd $(WEB_DIR) && npm run build

# The web app's checks: tsc --strict, eslint, the vitest unit tests.
web-check: client $(WEB_DIR)/node_modules/.package-lock.json
	cd $(WEB_DIR) && npm run typecheck && npm run lint && npm test

# `make run` builds the web app when Node >= 20 is on PATH; without it the API still starts
# (and its log says how to get the web app).
web-if-node:
	@if command -v node >/dev/null 2>&1 && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then \
		$(MAKE) web || echo "web app build failed; the API starts without it" >&2; \
	else \
		echo "Node >= 20 not found: the API starts without the web app (install Node, then make web)" >&2; \
	fi

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
	rm -rf $(NPM_DIR)/node_modules $(NPM_DIR)/src/client $(NPM_DIR)/dist $(NPM_DIR)/*.tgz
	rm -rf $(NODE_E2E)/node_modules $(NODE_E2E)/dist
	rm -rf $(WEB_DIR)/node_modules $(WEB_DIR)/dist
