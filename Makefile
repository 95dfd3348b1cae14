# QEMU free page hinting for live migration: a patch series and its harness.
# `make help` lists the targets.

SHELL := /bin/bash
PY := /usr/bin/python3

.PHONY: help deps source prepare build stock guest demo check export bench \
        soak clean distclean

help:
	@echo "make demo     install, prepare, build, boot a guest, migrate it (hints off/on)"
	@echo "make check    everything above, then all tests (CI runs this)"
	@echo "make export   write the work tree's commits back to base/ and patches/"
	@echo "make bench    benchmark: no hints vs upstream's hints vs ours"
	@echo "make soak     50 ping-pong migrations of a busy guest, with faults"
	@echo "steps: deps source prepare build stock guest; clean distclean"

deps:
	@scripts/deps.sh

source: deps
	@scripts/source.sh

prepare: source
	@scripts/prepare.sh

# What we build of our QEMU: the emulator and the tests the checks run.
OUR_TARGETS := qemu-system-x86_64 tests/unit/test-bitmap \
	tests/qtest/virtio-balloon-test tests/qtest/migration-test

build: prepare
	@scripts/build.sh ours $(OUR_TARGETS)

stock: prepare
	@scripts/build.sh stock qemu-system-x86_64

guest: deps
	@guest/build.sh

demo: build guest
	@$(PY) tests/demo.py

check: build stock guest
	@tests/run.sh

export:
	@scripts/export.sh

bench: build stock guest
	@$(PY) bench/bench.py $(BENCH_ARGS)

# The full ping-pong soak with fault injection (a short one is in check)
soak: build guest
	@$(PY) tests/e2e/soak.py --faults $(SOAK_ARGS)

clean:
	rm -rf build/guest build/qemu/build build/qemu-stock/build

distclean:
	rm -rf build
