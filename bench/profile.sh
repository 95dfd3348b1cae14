#!/bin/bash
# make profile: what a free page hint costs QEMU against sending the pages.
#
# Runs two cases of our virtio-balloon qtest with every QEMU under
# valgrind's callgrind (instruction counts: repeatable on a noisy machine):
#   free-page-hint/migrate            the test's "driver" hints 128 MiB
#                                     free in 32 hints of 4 MiB during a
#                                     migration of a 256 MiB source
#   free-page-hint/migrate-no-driver  the same source, no hints: 224 MiB of
#                                     data pages and 32 MiB of zero pages sent
# then reads the source QEMU's profiles with callgrind_annotate and prints
# instructions per 4 MiB hinted against instructions per 4 MiB sent
# (docs/profiling.md explains the numbers).  The binaries are copied to
# build/profile/bin first, so a rebuild during the run does not change them.
#
#   bench/profile.sh          profile, then print the summary
#   bench/profile.sh report   print the summary of the last profile again
STEP=profile
# shellcheck source=../scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"

P=$BUILD/profile
SRC_QEMU=$BUILD/qemu/build/qemu-system-x86_64
SRC_TEST=$BUILD/qemu/build/tests/qtest/virtio-balloon-test
CASES=(migrate migrate-no-driver)

profile() {
    local t case dir
    for t in valgrind callgrind_annotate; do
        command -v "$t" >/dev/null ||
            die "$t is missing" "install Debian's valgrind package ('apt-get install valgrind' or 'make deps')"
    done
    for t in "$SRC_QEMU" "$SRC_TEST"; do
        [ -x "$t" ] || die "$t is missing" "run 'make build'"
    done

    log "copying the binaries to $P/bin (a rebuild does not change them mid-run)"
    rm -rf "$P"
    mkdir -p "$P/bin"
    cp "$SRC_QEMU" "$SRC_TEST" "$P/bin/"
    (cd "$P/bin" && sha256sum qemu-system-x86_64 virtio-balloon-test) > "$P/binaries.sha256"
    git -C "$BUILD/qemu" describe --always --tags --dirty > "$P/source" 2>/dev/null || true
    # The copied QEMU finds its firmware in the build tree with -L; the
    # qtest wants a binary named *-system-<arch>
    mkdir -p "$P/callgrind"
    cat > "$P/callgrind/qemu-system-x86_64" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file="\$FPH_PROFILE_OUT/callgrind.%p" \\
    --log-file="\$FPH_PROFILE_OUT/valgrind.%p.log" \\
    "$P/bin/qemu-system-x86_64" -L "$BUILD/qemu/build/pc-bios" "\$@"
EOF
    chmod +x "$P/callgrind/qemu-system-x86_64"

    for case in "${CASES[@]}"; do
        dir=$P/$case
        mkdir -p "$dir"
        log "running free-page-hint/$case with QEMU under callgrind (a few minutes)"
        FPH_PROFILE_OUT=$dir QTEST_QEMU_BINARY=$P/callgrind/qemu-system-x86_64 \
            "$P/bin/virtio-balloon-test" -p "/x86_64/virtio-balloon/free-page-hint/$case" \
            > "$dir/qtest.log" 2>&1 ||
            die "the qtest free-page-hint/$case failed under callgrind (see $dir/qtest.log)" \
                "run it without callgrind first: 'make check'; then retry"
        grep -q '^ok ' "$dir/qtest.log" ||
            die "the qtest free-page-hint/$case did not run (see $dir/qtest.log)" \
                "check that $SRC_TEST has that case ('make build')"
    done
}

# The profile of the migration's source: the QEMU started without -incoming
source_profile() {
    local f
    for f in "$1"/callgrind.*; do
        case "$f" in *.txt) continue ;; esac
        if grep -q '^cmd:' "$f" && ! grep '^cmd:' "$f" | grep -q -- '-incoming'; then
            printf '%s\n' "$f"
            return
        fi
    done
    die "no source QEMU profile in $1" "run 'bench/profile.sh' (without 'report')"
}

# ... and the one started with -incoming
dest_profile() {
    local f
    for f in "$1"/callgrind.*; do
        case "$f" in *.txt) continue ;; esac
        if grep '^cmd:' "$f" | grep -q -- '-incoming'; then
            printf '%s\n' "$f"
            return
        fi
    done
    die "no destination QEMU profile in $1" "run 'bench/profile.sh' (without 'report')"
}

report() {
    local hint plain dst f
    hint=$(source_profile "$P/migrate")
    plain=$(source_profile "$P/migrate-no-driver")
    dst=$(dest_profile "$P/migrate-no-driver")
    for f in "$hint" "$plain" "$dst"; do
        callgrind_annotate --inclusive=yes --tree=calling --threshold=100 "$f" > "$f.calling.txt"
    done
    /usr/bin/python3 "$(dirname "$0")/profile_report.py" "$hint" "$plain" "$dst" ||
        die "could not read the callgrind summaries" "see $P/*/callgrind.*.txt"
    log "binaries: $(tr '\n' ' ' < "$P/binaries.sha256")"
    log "full profiles: $hint, $plain, $dst (callgrind_annotate, kcachegrind)"
}

case "${1:-all}" in
    all) profile; report ;;
    report) report ;;
    *) die "unknown argument '$1'" "run 'bench/profile.sh' or 'bench/profile.sh report'" ;;
esac
