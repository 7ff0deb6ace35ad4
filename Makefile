# Theory-to-code: one target per figure, tests, benchmarks. See README.md.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules

PYTHON_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REF := .venv-ref
REF_STAMP := $(REF)/.installed
PYTEST_ARGS ?=
FIG_ARGS ?=

.PHONY: setup test test-slow test-all oracle-cache nt-suite reference figs fig-ntk fig-ibc fig-singular fig-infoplane fig-attention fig-criticality fig-cntk bench lint clean

setup: $(STAMP)

# Re-installs only when the project's metadata changes; quick when done.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

reference: $(REF_STAMP)

# neural-tangents 0.6.5 only runs on jax 0.4.38; it is an oracle, kept in its own venv.
$(REF_STAMP): reference/requirements.txt
	@test -x $(REF)/bin/python || $(PYTHON_SYS) -m venv $(REF)
	$(REF)/bin/python -m pip install -q --upgrade pip
	$(REF)/bin/python -m pip install -q -r reference/requirements.txt
	$(REF)/bin/python -m pip install -q --no-deps neural-tangents==0.6.5
	$(REF)/bin/python reference/nt_oracle.py --selftest
	@touch $@

# pytest exits 5 when it collects no test; that fails the target like any other failure.
test: $(STAMP) $(REF_STAMP)
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q $(PYTEST_ARGS) || { rc=$$?; \
	  [ $$rc -ne 5 ] || echo "error: pytest collected no tests" >&2; exit $$rc; }

# The `slow` tests alone: empirical NTK against neural-tangents' implementation 1, NTK
# convergence at widths up to 4096, scikit-learn's checks of the singular classifiers, ReLU's
# majority vote at depth 10^5, alpha = m consistency on the arc task, the quick runs of the NTK,
# singular-classifier and information-plane experiments, the attention benchmark's quick run,
# and the criticality Monte Carlo checks that need 10^5+ networks; CI runs them after
# `make test` (the default suite, fresh clone, 2 idle cores, stop 23: 10 min 05 s to 11 min 17 s
# as this VM's speed varied by ±20 % between runs; ≈ 9 min at the faster speed; stop 24, with
# the any-function empirical NTK tests: 10 min 47 s; stop 25, with the neural-tangents API
# tests: 11 min 39 s, then two checks moved to slow; stop 26, neural-tangents' scripts in the
# slow suite: 7 min 44 s; stop 27: 7 min 06 s, 1 069 tests). Files go out
# longest first (tests/conftest.py's FILE_SECONDS with --no-loadscope-reorder).
test-slow: $(STAMP) $(REF_STAMP)
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q -m slow $(PYTEST_ARGS) || { rc=$$?; \
	  [ $$rc -ne 5 ] || echo "error: pytest collected no slow tests" >&2; exit $$rc; }

test-all: $(STAMP) $(REF_STAMP)
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q -m '' $(PYTEST_ARGS)

# Re-record neural-tangents' answers that the tests compare with (tests/oracle_cache/; see
# ORACLE_CACHE in tests/conftest.py): needed after a change to reference/nt_oracle.py, to the
# reference environment, or to a test's request (until then that test asks the live oracle).
ORACLE_TESTS = $(shell grep -l 'nt_oracle' tests/test_*.py tests/*/test_*.py)
oracle-cache: $(STAMP) $(REF_STAMP)
	rm -rf tests/oracle_cache
	THEORY_ORACLE=record $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q -m '' -p no:cacheprovider $(ORACLE_TESTS)

# neural-tangents 0.6.5's own tests, unchanged, against this package through a name map
# (reference/nt_suite.py; downloads its source distribution from PyPI once)
nt-suite: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,ntsuite]'
	$(PY) -m reference.nt_suite -n 2 $(PYTEST_ARGS)

figs: fig-ntk fig-ibc fig-singular fig-infoplane fig-attention fig-criticality fig-cntk

fig-ntk: $(STAMP)
	$(PY) -m experiments.ntk $(FIG_ARGS)

fig-ibc: $(STAMP)
	$(PY) -m experiments.ibc $(FIG_ARGS)

fig-singular: $(STAMP)
	$(PY) -m experiments.singular $(FIG_ARGS)

fig-infoplane: $(STAMP)
	$(PY) -m experiments.infoplane $(FIG_ARGS)

fig-attention: $(STAMP)
	$(PY) -m experiments.attention $(FIG_ARGS)

fig-criticality: $(STAMP)
	$(PY) -m experiments.criticality $(FIG_ARGS)

fig-cntk: $(STAMP)
	$(PY) -m experiments.cntk $(FIG_ARGS)

bench: $(STAMP) $(REF_STAMP)
	$(PY) -m benchmarks.kernels
	$(PY) -m benchmarks.singular
	$(PY) -m benchmarks.information
	$(PY) -m benchmarks.attention
	$(PY) -m benchmarks.criticality
	$(PY) -m benchmarks.empirical_any
	$(PY) -m benchmarks.predict
	$(PY) -m benchmarks.spatial
	$(PY) -m benchmarks.disk

lint: $(STAMP)
	$(PY) -m ruff check theory experiments benchmarks tests reference
	$(PY) -m ruff format --check theory experiments benchmarks tests reference

clean:
	rm -rf $(VENV) $(REF) results .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
