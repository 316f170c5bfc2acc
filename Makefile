# Entry points. `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help setup demo report grafana-push test test-unit test-e2e test-faults migrate kafka-start kafka-stop flink-start flink-stop status lock clean compose-up compose-down

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup:  ## venv from the pinned requirements, Kafka and connector jars from Maven Central
	bash deploy/local/setup.sh

demo:  ## the whole pipeline on the embedded default, with a summary and the report at the end
	bash deploy/local/demo.sh

report: setup  ## PNG charts and one self-contained HTML page from the store (REPORT_DIR); prints its path
	$(PY) -m flink_jobs.report

grafana-push: setup  ## push the dashboards to a running Grafana (GRAFANA_URL, GRAFANA_TOKEN)
	$(PY) -m deploy.grafana.push

test: setup  ## unit tests, then end-to-end tests on a real broker, MiniCluster and standalone cluster
	$(PY) -m pytest -m "not slow_faults" $(PYTEST_ARGS)

test-unit: setup  ## unit tests only (no broker, no Flink)
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

test-e2e: setup  ## end-to-end tests only (as in `make test`)
	$(PY) -m pytest -m "e2e and not slow_faults" $(PYTEST_ARGS)

test-faults: setup  ## every fault-injection test (TaskManager at parallelism 2 and 1, cluster, savepoint, broker, slow store, upgrade; ~12 min)
	$(PY) -m pytest -m faults $(PYTEST_ARGS)

migrate: setup  ## apply pending sql/ migrations and the TTL settings to the configured store
	$(PY) -m flink_jobs.migrate

kafka-start: setup  ## start the local Kafka broker
	bash deploy/local/kafka.sh start
kafka-stop:  ## stop the local Kafka broker
	bash deploy/local/kafka.sh stop
flink-start: setup  ## start the local standalone Flink cluster
	bash deploy/local/flink-cluster.sh start
flink-stop:  ## stop the local standalone Flink cluster
	bash deploy/local/flink-cluster.sh stop
status:  ## what of the local stack is running
	-bash deploy/local/kafka.sh status
	-bash deploy/local/flink-cluster.sh status

lock:  ## re-resolve requirements.txt in a clean venv and rewrite requirements.lock
	rm -rf .lock-venv && python3 -m venv .lock-venv && .lock-venv/bin/pip install -q -r requirements.txt
	.lock-venv/bin/pip check
	{ sed -n 1,2p requirements.lock; .lock-venv/bin/pip freeze; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

compose-up:  ## the whole stack in Docker (Kafka, Flink, ClickHouse, Grafana, producer); needs deploy/docker/.env
	docker compose -f deploy/docker/compose.yaml up -d --build
compose-down:  ## stop the Docker stack (volumes kept; add -v by hand to drop them)
	docker compose -f deploy/docker/compose.yaml down

clean:  ## remove the run directory (broker data, store, logs) after stopping the stack
	-bash deploy/local/flink-cluster.sh stop
	-bash deploy/local/kafka.sh stop
	rm -rf .run
