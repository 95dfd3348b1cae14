#!/bin/bash
# Prepare the QEMU git work tree in build/qemu:
#   commit 1      upstream QEMU + Debian's patches      (tag: upstream)
#   base/*.patch  removes upstream's free page hinting   (tag: base)
#   patches/      the series, in the order of patches/series (branch: series)
# plus build/qemu-stock, a git worktree at "upstream" for the stock build.
# The cover letter, patches/0000-cover-letter.patch, becomes the branch
# description, which scripts/export.sh turns back into the cover letter.
#
# A work tree that holds commits not in patches/ is never thrown away:
# export them first (make export) or pass FORCE=1.
STEP=prepare
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -f "$BUILD/src/.unpacked" ] || die "QEMU's source is not unpacked" "run 'make source'"

# Commits made by import carry this committer name, so that a commit made
# by hand in the work tree (and maybe not exported yet) can be told apart.
git_id=(-c user.name="QEMU free page hint import" -c user.email="qemu-fph@localhost"
        -c commit.gpgsign=false)

if [ -d "$WT/.git" ] && [ "${FORCE:-0}" != 1 ]; then
    [ -z "$(git -C "$WT" status --porcelain --untracked-files=no)" ] ||
        die "$WT has uncommitted changes" \
            "commit them and run 'make export', or re-run with FORCE=1 to discard them"
    tmp=$(mktemp -d)
    if "$TOP/scripts/export.sh" --check "$tmp" >/dev/null 2>&1; then
        rm -rf "$tmp"
        if [ -d "$STOCK_WT" ]; then
            log "up to date: $WT matches base/ and patches/"
            exit 0
        fi
    else
        rm -rf "$tmp"
        # Patches that changed in the project (a pull) are fine to take;
        # commits made in the work tree and never exported are not.
        hand=$(git -C "$WT" log --format=%cn upstream..series | grep -vc '^QEMU free page hint import$' || true)
        [ "$hand" = 0 ] ||
            die "$WT holds commits that are not exported to patches/" \
                "run 'make export' to keep them, or re-run with FORCE=1 to discard them"
    fi
fi

if [ ! -f "$WT/.git/upstream-done" ]; then
    log "creating the upstream commit from $(cat "$BUILD/src/.unpacked")"
    rm -rf "$WT" "$STOCK_WT"
    cp -a "$SRC_UNPACKED" "$WT.tmp"
    rm -rf "$WT.tmp/.pc"
    git -C "$WT.tmp" init -q -b series
    git -C "$WT.tmp" add -A -f .
    git -C "$WT.tmp" "${git_id[@]}" commit -q --date="2026-01-01T00:00:00Z" \
        -m "upstream: $(cat "$BUILD/src/.unpacked") with Debian's patches"
    git -C "$WT.tmp" tag upstream
    git -C "$WT.tmp" config user.name "QEMU free page hint developers"
    git -C "$WT.tmp" config user.email "qemu-fph@localhost"
    touch "$WT.tmp/.git/upstream-done"
    mv "$WT.tmp" "$WT"
fi

log "resetting the work tree to the upstream commit"
git -C "$WT" am --abort >/dev/null 2>&1 || true
git -C "$WT" checkout -q -f -B series upstream
git -C "$WT" clean -q -fd -e build/ -e build-san/
git -C "$WT" tag -d base >/dev/null 2>&1 || true

apply() {  # apply PATCH...: git am each, stopping with a clear message
    local p
    for p in "$@"; do
        git -C "$WT" "${git_id[@]}" am -q --keep-cr --committer-date-is-author-date "$p" ||
            { git -C "$WT" am --abort >/dev/null 2>&1 || true
              die "$(basename "$p") does not apply" \
                  "rebase it on the tree below it (see $WT), then 'make export'"; }
    done
}

mapfile -t base_patches < <(find "$TOP/base" -name '*.patch' | sort)
log "applying the base step (${#base_patches[@]} patch)"
apply "${base_patches[@]}"
git -C "$WT" tag base

series=()
if [ -f "$TOP/patches/series" ]; then
    while read -r p; do
        case "$p" in ''|'#'*) continue ;; esac
        series+=("$TOP/patches/$p")
    done < "$TOP/patches/series"
fi
log "applying the series (${#series[@]} patches)"
apply "${series[@]}"

cover=$TOP/patches/0000-cover-letter.patch
if [ -f "$cover" ]; then
    # Subject line and body up to the shortlog, as the branch description.
    awk '/^Subject:/ { sub(/^Subject: (\[[^]]*\] )?/, ""); subj = $0; insubj = 1; next }
         insubj && /^[ \t]/ { sub(/^[ \t]+/, " "); subj = subj $0; next }
         insubj { print subj; print ""; insubj = 0 }
         /^$/ && !body { body = 1; next }
         body && /^[^ ].* \([0-9]+\):$/ { exit }
         body { print }' "$cover" > "$WT/.git/cover-description"
    git -C "$WT" config branch.series.description "$(cat "$WT/.git/cover-description")"
fi

if [ ! -d "$STOCK_WT" ]; then
    log "adding the stock worktree at $STOCK_WT"
    git -C "$WT" worktree add -q --detach "$STOCK_WT" upstream
fi
log "ready: $(git -C "$WT" log --oneline upstream..series | wc -l) commits on top of upstream in $WT"
