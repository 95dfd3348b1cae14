#!/bin/bash
# make series-check: is the series bisectable?  Builds each commit of the
# series in turn, oldest first, and at each one runs QEMU's checkpatch and
# the series' fast tests (tests/unit/test-bitmap,
# tests/qtest/virtio-balloon-test and tests/qtest/migration-zero-page-test).
#
# It works in its own git worktree, build/qemu-series-check (detached HEAD,
# own build dir build/qemu-series-check/build, built by build.sh with the
# same configure flags and ccache), so build/qemu, its checkout and its
# build are never touched.  Logs: build/series-check/NN-STEP.log, and a
# table of every step's result and time in build/series-check/summary.txt.
#
#   series-check.sh [--fail-fast] [REVISION-RANGE]
#
# REVISION-RANGE is of build/qemu's repository, base..series by default
# (the series as committed there now, unexported commits included), e.g.
# 'series~2..series' for the last two patches.  Without --fail-fast it
# goes on after a failure (a patch that does not build is not tested) and
# lists every failure at the end.  Exits non-zero if any step failed;
# checkpatch fails a patch on errors only, its warnings are listed.
STEP=series-check
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

fail_fast=0
range=base..series
for arg in "$@"; do
    case "$arg" in
        --fail-fast) fail_fast=1 ;;
        -*) die "unknown option '$arg'" "usage: series-check.sh [--fail-fast] [REVISION-RANGE]" ;;
        *) range=$arg ;;
    esac
done

SC=$BUILD/qemu-series-check          # our worktree
SC_OBJ=$SC/build                     # its build (scripts/build.sh series-check)
LOGS=$BUILD/series-check
TARGETS=(qemu-system-x86_64 tests/unit/test-bitmap tests/qtest/virtio-balloon-test
         tests/qtest/migration-zero-page-test)

[ -d "$WT/.git" ] || die "no work tree at $WT" "run 'make prepare'"
git -C "$WT" rev-parse -q --verify base >/dev/null ||
    die "the work tree has no 'base' tag" "run 'make prepare'"
# The commits, resolved once: if the series is rewritten while we run, we
# go on checking the commits as they were when we started.
mapfile -t commits < <(git -C "$WT" rev-list --reverse --topo-order "$range")
[ "${#commits[@]}" -gt 0 ] || die "no commits in '$range' of $WT" "give a range such as base..series"
n=${#commits[@]}

mkdir -p "$LOGS"
exec 9>"$LOGS/.lock"
flock -n 9 || die "another series-check is running (lock: $LOGS/.lock)"
rm -f "$LOGS"/*.log "$LOGS/summary.txt"

now() { date +%s%N; }
secs() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e9 }'; }  # secs NANOSECONDS

# The worktree: made once, kept between runs (its build dir is what makes
# the next run incremental).  If build/qemu was made anew since, its link
# is broken: make it again, keeping the build dir.
if ! git -C "$SC" rev-parse -q --verify HEAD >/dev/null 2>&1 ||
   [ "$(cd "$(git -C "$SC" rev-parse --path-format=absolute --git-common-dir)" && pwd -P)" != \
     "$(cd "$WT/.git" && pwd -P)" ]; then
    log "adding the worktree $SC (detached, build dir $SC_OBJ)"
    keep=""
    if [ -d "$SC_OBJ" ]; then
        keep=$BUILD/.series-check-build.$$
        mv "$SC_OBJ" "$keep"
    fi
    rm -rf "$SC"
    # -f: the path may still be registered if the directory was removed
    git -C "$WT" worktree add -q -f --detach "$SC" "${commits[0]}"
    [ -z "$keep" ] || mv "$keep" "$SC_OBJ"
fi

series_desc="$range: $(git -C "$WT" rev-parse --short=12 "${commits[0]}") to $(git -C "$WT" rev-parse --short=12 "${commits[n - 1]}")"
log "checking $n commits ($series_desc) in $SC; logs in $LOGS"

failures=()        # "patch N/M sha (subject): STEP failed (log: ...)"
warn_patches=0     # patches with checkpatch warnings
warn_total=0
STEPS=(checkout build checkpatch test-bitmap virtio-balloon-test zero-page-test)
totals=(0 0 0 0 0 0) # nanoseconds per step, over all patches
rows=()            # the summary table
t_start=$(now)

cells=()           # this patch's row: one cell per step, then notes
notes=()
begin() {  # begin STEP-INDEX: say which step of which patch runs now
    printf '  [%d/%d] %s ...\n' "$i" "$n" "${STEPS[$1]}" >&2
}
record() {  # record STEP-INDEX STATUS NANOSECONDS [NOTE]: print and keep one step's result
    local t
    t=$(secs "$3")
    totals[$1]=$((totals[$1] + $3))
    cells[$1]="$2 ${t}s"
    [ -z "${4:-}" ] || notes+=("${STEPS[$1]}: $4")
    printf '  %-20s %-4s %6ss  %s\n' "${STEPS[$1]}" "$2" "$t" "${4:-}" >&2
}
failed() {  # failed STEP LOG: note a failure of this patch
    failures+=("patch $i/$n $short ($subject): $1 failed (log: $2)")
    log "FAILED: patch $i/$n $short: $1 (log: $2)"
}
row() {  # row: the table line of this patch
    local line joined
    line=$(printf '%2d/%-2d %s %-11s %-12s %-11s %-11s %-19s %-14s' "$i" "$n" "$short" \
        "${cells[0]:--}" "${cells[1]:--}" "${cells[2]:--}" "${cells[3]:--}" "${cells[4]:--}" \
        "${cells[5]:--}")
    joined=$(printf '%s; ' "${notes[@]}")
    rows+=("$line  ${joined%; }")
}

i=0
for c in "${commits[@]}"; do
    i=$((i + 1))
    short=$(git -C "$WT" rev-parse --short=12 "$c")
    subject=$(git -C "$WT" log -1 --format=%s "$c")
    tag=$(printf '%02d' "$i")
    cells=()
    notes=()
    log "patch $i/$n: $short $subject"

    # checkout: only the files that differ change, so ninja's next build is
    # incremental.  -f: the worktree is ours, local edits in it are dropped.
    t=$(now)
    out=$LOGS/$tag-checkout.log
    if ! git -C "$SC" checkout -q -f --detach "$c" >"$out" 2>&1; then
        record 0 FAIL $(($(now) - t)); failed checkout "$out"
        row
        if [ "$fail_fast" = 1 ]; then break; fi
        continue
    fi
    record 0 ok $(($(now) - t))

    # build: scripts/build.sh's own messages show; ninja's whole output is
    # appended to the log.
    begin 1
    t=$(now)
    out=$LOGS/$tag-build.log
    build_rc=0
    # A test that this commit does not have yet (the series adds
    # migration-zero-page-test after its first patch) is not built or run
    targets=()
    for target in "${TARGETS[@]}"; do
        case "$target" in
            tests/qtest/*)
                grep -q "'$(basename "$target")'" "$SC/tests/qtest/meson.build" || continue ;;
        esac
        targets+=("$target")
    done
    "$TOP/scripts/build.sh" series-check "${targets[@]}" 2>&1 | tee "$out" | sed -u 's/^/    /' >&2 ||
        build_rc=$?
    { echo "--- ninja output ($SC_OBJ/ninja.log) ---"; cat "$SC_OBJ/ninja.log" 2>/dev/null || true; } >> "$out"
    edges=$(grep -c '^\[[0-9]*/[0-9]*\]' "$SC_OBJ/ninja.log" 2>/dev/null || true)
    if [ "$build_rc" != 0 ]; then
        record 1 FAIL $(($(now) - t)) "exit $build_rc"; failed build "$out"
        grep -E 'error|FAILED|unknown target' "$SC_OBJ/ninja.log" 2>/dev/null | head -n 20 | sed 's/^/    | /' >&2 || true
    else
        record 1 ok $(($(now) - t)) "${edges:-0} ninja edges"
    fi

    # checkpatch, as QEMU's CI runs it: on the commit, by the tree's own
    # script.  It exits 1 on errors only (without --strict); its "total:"
    # line counts both.
    begin 2
    t=$(now)
    out=$LOGS/$tag-checkpatch.log
    cp_rc=0
    (cd "$SC" && ./scripts/checkpatch.pl "$c^..$c") >"$out" 2>&1 || cp_rc=$?
    total=$(grep -E '^total: [0-9]+ errors, [0-9]+ warnings' "$out" | tail -n 1 || true)
    errors=$(echo "$total" | sed -n 's/^total: \([0-9]*\) errors.*/\1/p')
    warnings=$(echo "$total" | sed -n 's/^total: [0-9]* errors, \([0-9]*\) warnings.*/\1/p')
    grep -E '^(ERROR|WARNING): ' "$out" | sed 's/^/    /' >&2 || true
    if [ -z "$total" ] || [ "$cp_rc" != 0 ] || [ "${errors:-1}" != 0 ]; then
        record 2 FAIL $(($(now) - t)) "${errors:-?} errors, ${warnings:-?} warnings"
        failed checkpatch "$out"
        [ -n "$total" ] || tail -n 5 "$out" | sed 's/^/    | /' >&2
    else
        record 2 ok $(($(now) - t)) "$([ "$warnings" = 0 ] || echo "$warnings warnings")"
    fi
    if [ "${warnings:-0}" -gt 0 ]; then
        warn_patches=$((warn_patches + 1))
        warn_total=$((warn_total + warnings))
    fi

    # The fast tests against this commit's build, as tests/run.sh runs
    # them (the qtest's QEMUs use -accel qtest: KVM does not matter).
    if [ "$build_rc" = 0 ]; then
        k=3
        for test in unit/test-bitmap:120 qtest/virtio-balloon-test:600 \
                    qtest/migration-zero-page-test:300; do
            name=${test%:*}
            limit=${test##*:}
            if [ ! -x "$SC_OBJ/tests/$name" ] ||
               ! printf '%s\n' "${targets[@]}" | grep -qx "tests/$name"; then
                record $k n/a 0 "not in this commit"
                k=$((k + 1))
                continue
            fi
            begin $k
            t=$(now)
            out=$LOGS/$tag-$(basename "$name").log
            rc=0
            (cd "$SC_OBJ" && QTEST_QEMU_BINARY=$SC_OBJ/qemu-system-x86_64 \
                timeout "$limit" "$SC_OBJ/tests/$name") >"$out" 2>&1 || rc=$?
            oks=$(grep -c '^ok ' "$out" || true)
            noks=$(grep -c '^not ok ' "$out" || true)
            if [ "$rc" = 0 ] && [ "$noks" = 0 ]; then
                record $k ok $(($(now) - t)) "$oks ok"
            else
                record $k FAIL $(($(now) - t)) "$oks ok, $noks not ok, exit $rc$([ "$rc" != 124 ] || echo " (timeout ${limit}s)")"
                grep '^not ok ' "$out" | sed 's/^/    /' >&2 || true
                tail -n 10 "$out" | sed 's/^/    | /' >&2
                failed "$(basename "$name")" "$out"
            fi
            k=$((k + 1))
        done
    else
        notes+=("tests not run: the build failed")
        log "tests not run: the build failed"
    fi
    row
    if [ "$fail_fast" = 1 ] && [ "${#failures[@]}" -gt 0 ]; then break; fi
done

elapsed=$(secs $(($(now) - t_start)))
{
    echo "series-check of $series_desc, $(date -u '+%Y-%m-%d %H:%M UTC'), ${elapsed}s"
    printf '%-5s %-12s %-11s %-12s %-11s %-11s %-19s %-14s  %s\n' patch commit "${STEPS[@]}" notes
    printf '%s\n' "${rows[@]}"
    printf '%-18s %-11s %-12s %-11s %-11s %-19s %-14s\n' "total" \
        "$(secs "${totals[0]}")s" "$(secs "${totals[1]}")s" "$(secs "${totals[2]}")s" \
        "$(secs "${totals[3]}")s" "$(secs "${totals[4]}")s" "$(secs "${totals[5]}")s"
    [ "${#failures[@]}" = 0 ] || printf 'FAILED: %s\n' "${failures[@]}"
} > "$LOGS/summary.txt"

echo
cat "$LOGS/summary.txt"
checked=${#rows[@]}
echo "series-check: $checked of $n patches checked ($series_desc), ${#failures[@]} failed steps, checkpatch warnings: $warn_total in $warn_patches patches, ${elapsed}s; logs: $LOGS"
[ "${#failures[@]}" = 0 ] && [ "$checked" = "$n" ]
