#!/bin/bash
# make check: QEMU's unit tests and qtests for what the series touches, then
# the project's end-to-end tests with a real Debian guest.  Prints one
# "N passed, N failed" line at the end; exits non-zero on any failure.
STEP=check
# shellcheck source=../scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"

PY=/usr/bin/python3
B=$WT/build
passed=0
failed=0
failures=()

# The guests of QEMU's migration-test try KVM first; where KVM does not
# really run a guest (see harness/vm.py), hide /dev/kvm from them.  The
# harness comes through PYTHONPATH (scripts/lib.sh).
accel=$($PY -c 'from harness import vm; print(vm.probe_accel())') ||
    die "the accelerator probe failed" "see the message above"
hide_kvm=()
if [ "$accel" != kvm ] && [ -e /dev/kvm ]; then
    hide_kvm=(unshare --mount sh -c 'mount --bind /dev/null /dev/kvm && exec "$@"' sh)
fi

# run NAME TIMEOUT COMMAND...: one test program, TAP or exit code.  Its
# output goes to build/check-logs/NAME.log; the e2e harness puts each
# QEMU's command line, output, guest console and last migration state
# in build/check-logs/NAME/ (FPH_ARTIFACTS), kept only if the test fails.
run() {
    local name=$1 limit=$2 out art rc
    shift 2
    log "running $name"
    out=$BUILD/check-logs/$(echo "$name" | tr '/ ' '__').log
    art=${out%.log}
    rm -rf "$art"
    mkdir -p "$art"
    rc=0
    FPH_ARTIFACTS=$art timeout "$limit" "$@" > "$out" 2>&1 || rc=$?
    grep -E '^(ok|not ok) ' "$out" | sed 's/^/    /' >&2 || true
    if [ "$rc" = 0 ]; then
        passed=$((passed + 1))
        rm -rf "$art"
    else
        failed=$((failed + 1))
        if [ -n "$(ls -A "$art")" ]; then
            failures+=("$name (exit $rc; log: $out; each QEMU's files: $art)")
        else
            rm -rf "$art"
            failures+=("$name (exit $rc; log: $out)")
        fi
        tail -n 20 "$out" | sed 's/^/    | /' >&2
    fi
}

export QTEST_QEMU_BINARY=$B/qemu-system-x86_64
[ -x "$QTEST_QEMU_BINARY" ] || die "$QTEST_QEMU_BINARY is missing" "run 'make build'"

run unit/test-bitmap 120 "$B/tests/unit/test-bitmap"
run qtest/virtio-balloon-test 600 "$B/tests/qtest/virtio-balloon-test"
run qtest/migration-zero-page-test 120 "$B/tests/qtest/migration-zero-page-test"
for t in precopy/unix/plain precopy/unix/suspend/live postcopy/plain \
         multifd/tcp/plain/cancel; do
    run "qtest/migration-test/$t" 600 "${hide_kvm[@]}" \
        "$B/tests/qtest/migration-test" -p "/x86_64/migration/$t"
done
# tests/e2e/test_*.py: one unittest module each (test_e2e.py is the core).
# test_kvm_semantics.py needs the QEMUs with the test aid (make testaid):
# here their absence is a failure, not a skip.
export FPH_REQUIRE_AID=1
for t in "$TOP"/tests/e2e/test_*.py; do
    run "e2e/$(basename "$t" .py)" 1800 "$PY" "$t" -v
done

echo
for f in "${failures[@]}"; do
    echo "FAILED: $f"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
