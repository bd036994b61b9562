# Both entry points set the machine up first (idempotent); run them as root: sudo make demo
VENV ?= .venv
export VENV

.PHONY: setup matrix demo test stress vm-test vm-suspend vm-resume bench clean

setup:
	@MAKE_TARGET=$(firstword $(MAKECMDGOALS) setup) bash scripts/setup.sh

# Debian chroots with CPython 3.9, 3.13, 3.14 and 3.15, built once and cached
matrix:
	@bash scripts/matrix.sh

demo: setup
	@bash demo/run.sh

# TESTS: pytest arguments, to run only some tests (CI's smoke run in the VM)
test: setup matrix
	$(VENV)/bin/python -m pytest -q -ra $(TESTS)

# The whole suite inside a Vagrant VM (a box built from Debian packages): vagrant/vm-test.sh.
# BOX: bookworm (Debian 12, the default), trixie (Debian 13) or all.
# SHARDS: how many VMs of the release run the suite at once, each a part of it (1 to 4).
# PARTS: which of those parts run now (1,2 say; all by default): a suite run part by part.
BOX ?= bookworm
PARTS ?=
SHARDS ?= 1
vm-test:
	@BOX=$(BOX) SHARDS=$(SHARDS) PARTS=$(PARTS) bash vagrant/vm-test.sh $(TESTS)

# A run longer than a working session: its machines saved to disk (the suites frozen where they
# are), then started again where they were and followed to the end.
vm-suspend:
	@BOX=$(BOX) SHARDS=$(SHARDS) PARTS=$(PARTS) bash vagrant/vm-test.sh --suspend

vm-resume:
	@BOX=$(BOX) SHARDS=$(SHARDS) PARTS=$(PARTS) bash vagrant/vm-test.sh --resume

# The tracer under load (about 8 minutes): process churn for five minutes with its memory
# sampled, 10,000 threads, deep recursion, 50,000 call paths, tracers side by side, stopped.
stress: setup
	$(VENV)/bin/python -m pytest -q -ra -s tests/stress

# What tracing costs, side by side with an empty BPF program and the peers (bcc's uflow and
# ucalls, bpftrace, installed here), and the sampling profilers beside py-spy (from PyPI, in its
# own venv), and each command's start and stop (bench/startup.py): BENCHMARKS.md and bench/results.json.
# About 30 minutes.
bench: matrix
	@MAKE_TARGET=bench EXTRA_APT_PACKAGES="bpfcc-tools bpftrace" bash scripts/setup.sh
	@bash bench/setup-py-spy.sh
	$(VENV)/bin/python -m bench
	$(VENV)/bin/python -m bench.dump
	$(VENV)/bin/python -m bench.startup
	$(VENV)/bin/python -m bench.streams

clean:
	rm -rf $(VENV) demo-output .pytest_cache
