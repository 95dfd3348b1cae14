# QEMU free page hinting for live migration: a patch series and its harness.
# `make help` lists the targets.

SHELL := /bin/bash
PY := /usr/bin/python3
# The Python harness is the package harness/; QMP comes from QEMU's own
# python/qemu in the work tree (scripts/lib.sh says the same to the scripts)
export PYTHONPATH := $(CURDIR):$(or $(BUILD),$(CURDIR)/build)/qemu/python$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: help deps source prepare build stock testaid guest demo check export \
        bench ablation profile soak sanitize fuzz series-check libvirt-demo \
        snapshot-bench reliability clean distclean

help:
	@echo "make demo     install, prepare, build, boot a guest, migrate it (hints off/on)"
	@echo "make check    everything above, then all tests (CI runs this)"
	@echo "make export   write the work tree's commits back to base/ and patches/"
	@echo "make bench    benchmark: no hints vs upstream's hints vs ours, in a new"
	@echo "              folder of bench/runs/ (index: bench/runs/index.md)"
	@echo "make ablation the series with each mechanism switched off in turn"
	@echo "make profile  callgrind: what a 4 MiB hint costs against sending 4 MiB;"
	@echo "              perf: where a 2 GiB guest's migration spends the host's CPU"
	@echo "make soak     50 ping-pong migrations of a busy guest, with faults"
	@echo "make sanitize virtio-balloon-test against an ASAN + UBSAN build"
	@echo "make fuzz     libFuzzer on the free page vq, FUZZ_TIME seconds (300)"
	@echo "make libvirt-demo  live migration and a live snapshot through libvirt"
	@echo "make snapshot-bench  live snapshots to a file: no hints vs upstream vs ours"
	@echo "make reliability  hints combined with other memory and migration features"
	@echo "make series-check  build, checkpatch and fast-test each patch in turn"
	@echo "              (bisectable?); SERIES_CHECK_ARGS='--fail-fast series~2..series'"
	@echo "make testaid  stock and ours with testaid/ (TCG with KVM's lazy dirty"
	@echo "              log clearing), for tests/e2e/kvm_semantics.py"
	@echo "steps: deps source prepare build stock testaid guest; clean distclean"

deps:
	@scripts/deps.sh

source: deps
	@scripts/source.sh

prepare: source
	@scripts/prepare.sh

# What we build of our QEMU: the emulator and the tests the checks run.
OUR_TARGETS := qemu-system-x86_64 tests/unit/test-bitmap \
	tests/qtest/virtio-balloon-test tests/qtest/migration-test \
	tests/qtest/migration-zero-page-test

build: prepare
	@scripts/build.sh ours $(OUR_TARGETS)

stock: prepare
	@scripts/build.sh stock qemu-system-x86_64

# Not part of the series: the test aid of testaid/ on stock and on ours,
# in build/qemu-aid-stock and build/qemu-aid-ours (tests/e2e/kvm_semantics.py)
testaid: prepare
	@scripts/patched.sh aid-stock:upstream:testaid aid-ours:series:testaid

guest: deps
	@guest/build.sh

demo: build guest
	@$(PY) tests/demo.py

check: build stock testaid guest
	@tests/run.sh

export:
	@scripts/export.sh

bench: build stock guest
	@$(PY) bench/bench.py $(BENCH_ARGS)

# The series with each of its mechanisms switched off in turn, against
# the whole series and upstream's hints (bench/ablation/, docs/benchmarks.md)
ablation: build stock guest
	@scripts/patched.sh ablate:series:bench/ablation
	@$(PY) bench/bench.py --ablation $(BENCH_ARGS)

profile: build guest
	@bench/profile.sh
	@$(PY) bench/profile_migration.py $(PROFILE_ARGS)

# The full ping-pong soak with fault injection (a short one is in check)
soak: build guest
	@$(PY) -m harness.soak --faults $(SOAK_ARGS)

# The series again with ASAN, UBSAN and libFuzzer (build/qemu/build-san)
sanitize: prepare
	@scripts/build.sh san qemu-system-x86_64 tests/qtest/virtio-balloon-test
	@tests/sanitize.sh

FUZZ_TIME ?= 300
fuzz: prepare
	@scripts/build.sh san qemu-fuzz-x86_64
	@FUZZ_TIME=$(FUZZ_TIME) tests/fuzz.sh

# Each commit of base..series built, checkpatch'ed and given the two fast
# tests, in its own worktree (build/qemu-series-check); logs in
# build/series-check/.  It checks the work tree's series as committed, so
# it runs prepare only when there is no work tree yet: prepare refuses a
# tree with commits not exported yet, the very thing to check before export.
series-check: $(if $(wildcard build/qemu/.git),,prepare)
	@scripts/series-check.sh $(SERIES_CHECK_ARGS)

# Two libvirt daemons on this machine: virsh migrate --live, a live snapshot
libvirt-demo: build guest
	@libvirt/demo.sh $(LIBVIRT_ARGS)

# Live migration to a file: URI (plain and mapped-ram), restored and verified
snapshot-bench: build stock guest
	@$(PY) bench/snapshot.py $(SNAPSHOT_ARGS)

# Free page hints with hugepages, virtio-mem, DIMMs, multifd, S3, ... (all
# cases; make check runs the short ones)
reliability: build guest
	@$(PY) -m harness.combos $(RELIABILITY_ARGS)

clean:
	rm -rf build/guest build/qemu/build build/qemu/build-san build/qemu-stock/build \
		build/qemu-aid-stock/build build/qemu-aid-ours/build

distclean:
	rm -rf build
