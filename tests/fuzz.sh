#!/bin/bash
# make fuzz: libFuzzer on the free page hint vq and the config space of
# virtio-balloon (the series' fuzz target in tests/qtest/fuzz), in the
# ASAN + UBSAN + libFuzzer build (build/qemu/build-san), for FUZZ_TIME
# seconds.  Prints executions, time and coverage; exits non-zero on a
# crash, a sanitizer report or a hang, naming the input that caused it.
# The corpus is kept in build/fuzz/corpus, so a later run goes on from it;
# it starts from the repo's tests/fuzz-corpus, into which a run that found
# nothing merges what it learnt (libFuzzer -merge=1: the fewest inputs
# that cover as much), for a commit.
STEP=fuzz
# shellcheck source=../scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"

FUZZ_TIME=${FUZZ_TIME:-300}
target=virtio-balloon-free-page-hint
bin=$WT/build-san/qemu-fuzz-x86_64
dir=$BUILD/fuzz
[ -x "$bin" ] || die "$bin is missing" "run 'make fuzz' (it builds it)"
"$bin" 2>/dev/null | grep -q "^ \* $target " ||
    die "$bin has no fuzz target '$target'" \
        "the series needs the patch 'tests/qtest/fuzz: add a virtio-balloon free page hint fuzz target'"

# Reports end the run as a crash, with the input saved; no leak check at
# exit, where QEMU does not free what it holds.
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer

kept=$TOP/tests/fuzz-corpus
mkdir -p "$dir/corpus" "$dir/artifacts" "$kept"
cp -n "$kept"/* "$dir/corpus/" 2>/dev/null || true
# A first input, in the target's encoding: the current command id, a hint
# of the RAM page at 4 KiB (4096 bytes), then the STOP id, kicked.
seed=$dir/corpus/seed-id-hint-stop
[ -e "$seed" ] || printf '\x00\x00\x00\x00\x01\x01\x00\x10\x00\x00\x03\x00\x00\x00\x00\x00\x00\x02\x00\x02' > "$seed"
out=$dir/fuzz.log
log "fuzzing $target for $FUZZ_TIME s, corpus $dir/corpus ($(find "$dir/corpus" -type f | wc -l) inputs), log $out"
# -timeout: one input running that long is a hang.  -len_control=0: inputs
# up to -max_len (the target's 256 operations) from the start; at a few
# executions a second, libFuzzer's gradual growth of the length limit kept
# them at 20 bytes (a few operations) through the 9 minutes of a first run.
# Status every 30 s.
set +e
"$bin" --fuzz-target="$target" -max_total_time="$FUZZ_TIME" -timeout=60 \
    -len_control=0 -max_len=1024 \
    -rss_limit_mb=8192 -print_final_stats=1 -print_coverage=1 \
    -artifact_prefix="$dir/artifacts/" "$dir/corpus" 2>&1 | tee "$out" |
    awk '/^#[0-9]+/ && systime() - last >= 30 { print "  " $0; last = systime(); fflush() }
         /ERROR|runtime error|ALARM|deadly signal|Test unit written/ { print; fflush() }' >&2
rc=${PIPESTATUS[0]}
set -e

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out")
new=$(sed -n 's/^stat::new_units_added: *//p' "$out")
cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$out" | tail -n 1)
log "${runs:-?} executions in $FUZZ_TIME s (${rate:-?}/s), ${cov:-no coverage line}, ${new:-?} new inputs"
grep '^virtio-balloon-free-page-hint:' "$out" | sed "s/^/[$STEP] /" >&2 || true
# Per function of the device (only hw/ is instrumented for coverage)
funcs=$(grep -E 'COVERED_FUNC.*hw/virtio/virtio-balloon\.c' "$out" || true)
if [ -n "$funcs" ]; then
    log "virtio-balloon.c: $(grep -c '^COVERED_FUNC' <<<"$funcs") functions covered, $(grep -c '^UNCOVERED_FUNC' <<<"$funcs") not"
    grep -E 'free_page' <<<"$funcs" |
        sed -E -e 's/^COVERED_FUNC: hits: [0-9]+ edges: ([0-9]+\/[0-9]+) ([^ ]+).*/    \2: \1 edges/' \
               -e 's/^UNCOVERED_FUNC: .* ([^ ]+) [^ ]+$/    \1: not reached/' >&2
fi
# The point of the target: hints that reach migration's dirty bitmap
hinted=$(sed -n 's/.*migration saw \([0-9]*\) bytes hinted.*/\1/p' "$out")
if [ "$rc" = 0 ] && [ "${hinted:-0}" = 0 ]; then
    die "no hint reached qemu_guest_free_page_hint() in $FUZZ_TIME s (log $out)" \
        "the target no longer gets the device into a hint round: see the series' changes to migration/ram.c"
fi
if [ "$rc" != 0 ]; then
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -n 1)
    grep -E -A30 'ERROR: |runtime error:|ALARM' "$out" | head -n 60 >&2
    die "the fuzzer found a problem (exit $rc; log $out)" \
        "reproduce with: $bin --fuzz-target=$target ${input:-<input>}; make it a case of tests/qtest/virtio-balloon-test.c"
fi
# Keep what this run learnt, minimised, in the repo's corpus
before=$(find "$kept" -type f | wc -l)
"$bin" --fuzz-target="$target" -merge=1 -timeout=60 -rss_limit_mb=8192 \
    "$kept" "$dir/corpus" > "$dir/merge.log" 2>&1 ||
    die "merging the corpus into $kept failed (log $dir/merge.log)" \
        "the inputs in $dir/corpus are kept; run 'make fuzz' again"
log "tests/fuzz-corpus: $before -> $(find "$kept" -type f | wc -l) inputs (commit them)"
