# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# XLA's HloModuleProto schema for the HLO FLOP-count and device-path tests (tests/hlo_schema.py says why it is
# extracted from a wheel); once per machine. Without network the tests that need it skip with the reason.
HLO_SCHEMA := .cache/xla_hlo_schema/tensorflow/compiler/xla/service/hlo_pb2.py
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup run test test-all ui report server bench bench-tracking calibrate clean hlo-schema

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned resolve pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: setup
	$(PY) -m pipeline $(ARGS)

test: setup $(HLO_SCHEMA)
	$(PY) -m pytest -q $(ARGS)

# The printed links open the runs table in the classic layout with the headline view (src/pipeline/tracking/ui.py).
ui: setup
	-$(PY) -m pipeline.tracking.ui sqlite:///$(CURDIR)/mlflow.db http://127.0.0.1:5000
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server --host 127.0.0.1 --port 5000 \
		--workers 1 --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --default-artifact-root $(CURDIR)/mlruns

# The team tracking server: mlflow server on a PostgreSQL store (a local cluster under server/ unless
# ARGS="--db postgresql://..."), artifacts uploaded through it; clients use tracking.uri=http://<host>:5000.
report: setup
	$(PY) -m pipeline.report $(ARGS)

server: setup
	$(PY) -m pipeline.tracking.server $(ARGS)

bench: setup
	$(PY) benchmarks/run.py $(ARGS)

# 200 runs from 4 parallel writers to SQLite and to the PostgreSQL-backed server (none may be lost), and a
# 16-job CPU sweep, basic launcher against joblib: ~10 min on 2 cores, so not part of `make bench`.
bench-tracking: setup
	$(PY) benchmarks/bench_tracking.py $(ARGS)

# The cost model against published device measurements; SOURCES=<dir of git checkouts> runs the originals too.
calibrate: setup
	$(PY) -m pipeline.calibrate $(if $(SOURCES),--sources $(SOURCES)) $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache

hlo-schema: $(HLO_SCHEMA)

$(HLO_SCHEMA): | setup
	-$(PY) -m tests.hlo_schema
