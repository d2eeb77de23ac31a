# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KAFKA_LIB := deploy/kafka/target/lib

.PHONY: install run test lint check kafka-jars tools bench constraints schemas clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

install: $(STAMP)

# Apache Kafka's jars, from Maven Central (pinned in deploy/kafka/pom.xml).
$(KAFKA_LIB)/.stamp: deploy/kafka/pom.xml
	mvn -B -q -f deploy/kafka/pom.xml dependency:copy-dependencies
	@touch $@

kafka-jars: $(KAFKA_LIB)/.stamp

# docker-compose, to validate docker-compose.yml (Debian's package).
tools:
	@command -v docker-compose >/dev/null || sh deploy/install-compose.sh

run: install
	$(BIN)/relais up

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install kafka-jars tools lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install kafka-jars
	$(BIN)/python -m bench.intake_throughput
	$(BIN)/python -m bench.consented_flows

# Regenerate the committed OpenAPI and AsyncAPI documents (tests fail when they drift).
schemas: install
	$(BIN)/relais openapi > schemas/openapi.json
	$(BIN)/relais asyncapi > schemas/asyncapi.json

# Re-pin every dependency from what is installed now.
constraints: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^relais' > constraints.txt

clean:
	rm -rf $(VENV) .relais deploy/kafka/target .pytest_cache .mypy_cache .ruff_cache
