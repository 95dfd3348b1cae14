#!/bin/bash
# make sanitize: every case of QEMU's virtio-balloon-test against the
# ASAN + UBSAN build of the series (build/qemu/build-san, `build.sh san`).
# Fails on a failed case and on any sanitizer report, also one from a QEMU
# whose exit status the test does not check (a migration's destination).
STEP=sanitize
# shellcheck source=../scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"

B=$WT/build-san
test=$B/tests/qtest/virtio-balloon-test
export QTEST_QEMU_BINARY=$B/qemu-system-x86_64
for f in "$QTEST_QEMU_BINARY" "$test"; do
    [ -x "$f" ] || die "$f is missing" "run 'make sanitize' (it builds it)"
done

# A report stops the process with an error.  Leaks are checked at exit, of
# QEMU and of the test program; fast_unwind_on_malloc=0 gives them whole
# stacks (glib has no frame pointers).
export ASAN_OPTIONS=abort_on_error=1:halt_on_error=1:detect_leaks=1:fast_unwind_on_malloc=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer

mkdir -p "$BUILD/check-logs"
out=$BUILD/check-logs/sanitize.log
log "running virtio-balloon-test under ASAN + UBSAN (log: $out)"
start=$SECONDS
rc=0
timeout 1800 "$test" --tap > "$out" 2>&1 || rc=$?
grep -E '^(ok|not ok) ' "$out" | sed 's/^/    /' >&2 || true
reports=$(grep -cE 'SUMMARY: [A-Za-z]+Sanitizer|runtime error:' "$out" || true)
log "$((SECONDS - start)) s; exit $rc; $reports sanitizer report line(s)"
if [ "$reports" != 0 ]; then
    grep -E -A30 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$out" | head -n 80 >&2
    die "a sanitizer reported a problem (see $out)" \
        "fix the bug it names; the stack above says where"
fi
[ "$rc" = 0 ] || { tail -n 30 "$out" >&2
    die "virtio-balloon-test failed under the sanitizers (exit $rc; see $out)" \
        "run it by hand: QTEST_QEMU_BINARY=$QTEST_QEMU_BINARY $test -p PATH"; }
echo "$(grep -c '^ok ' "$out") passed, 0 failed"
