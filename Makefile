# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WEB_STAMP := web/node_modules/.installed
OIDC_STAMP := tests/oidc/node_modules/.installed
INTEROP_STAMP := tests/interop/node/node_modules/.installed
KAFKA_LIB := deploy/kafka/target/lib

.PHONY: install run test lint check kafka-jars tools bench faults constraints schemas clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

# The DSFR and axe-core, from the npm registry (pinned in web/package-lock.json). npm runs in
# web/ because @gouvfr/dsfr's install script looks for web/.dsfr.yml (its terms of use) in the
# directory npm was started from.
$(WEB_STAMP): web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 20.19+ and retry." >&2; exit 1; }
	cd web && npm ci --loglevel=error --no-audit --no-fund >/dev/null
	@touch $@

# The OpenID provider the tests sign in with (panva's oidc-provider, pinned in
# tests/oidc/package-lock.json), run by Node: for `make test` only.
$(OIDC_STAMP): tests/oidc/package.json tests/oidc/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 20.19+ and retry." >&2; exit 1; }
	cd tests/oidc && npm ci --loglevel=error --no-audit --no-fund >/dev/null
	@touch $@

# The foreign tools that read Relais's contracts in tests/interop/ (the official AsyncAPI
# parser, Redocly's OpenAPI linter; pinned in tests/interop/node/package-lock.json).
$(INTEROP_STAMP): tests/interop/node/package.json tests/interop/node/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 20.19+ and retry." >&2; exit 1; }
	cd tests/interop/node && npm ci --loglevel=error --no-audit --no-fund >/dev/null
	@touch $@

install: $(STAMP) $(WEB_STAMP)

# Apache Kafka's jars, from Maven Central (pinned in deploy/kafka/pom.xml).
$(KAFKA_LIB)/.stamp: deploy/kafka/pom.xml
	mvn -B -q -f deploy/kafka/pom.xml dependency:copy-dependencies
	@touch $@

kafka-jars: $(KAFKA_LIB)/.stamp

# docker-compose, to validate docker-compose.yml, and chromium for the browser tests (Debian's
# packages); helm, kubeconform and the schemas to validate the Kubernetes chart with (Go modules
# and Maven Central, pinned in deploy/kubernetes/install-tools.sh; nothing once installed).
tools: $(STAMP)
	@command -v docker-compose >/dev/null || sh deploy/install-compose.sh
	@command -v chromium >/dev/null || sh deploy/install-chromium.sh
	@PYTHON=$(BIN)/python sh deploy/kubernetes/install-tools.sh

run: install
	$(BIN)/relais up

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install $(OIDC_STAMP) $(INTEROP_STAMP) kafka-jars tools lint
	$(BIN)/pytest $(PYTEST_ARGS)

# A short form of every benchmark of issue #12 (under ten minutes), the report in
# bench/results/latest.md: see README.md, "Benchmarks".
bench: install kafka-jars
	$(BIN)/python -m bench.run_all

# The fault-injection harness on both transports, 50 faults each (about 25 minutes; its
# short form runs in `make test`): see README.md, "Delivery guarantees".
faults: install kafka-jars
	$(BIN)/python -m bench.faults --transport both --faults 50

# Regenerate the committed OpenAPI and AsyncAPI documents (tests fail when they drift).
schemas: install
	$(BIN)/relais openapi > schemas/openapi.json
	$(BIN)/relais asyncapi > schemas/asyncapi.json

# Re-pin every dependency from what is installed now.
constraints: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^relais' > constraints.txt

clean:
	rm -rf $(VENV) web/node_modules tests/oidc/node_modules tests/interop/node/node_modules .relais deploy/kafka/target deploy/kubernetes/.tools deploy/kubernetes/strimzi/target .pytest_cache .mypy_cache .ruff_cache
