#!/bin/bash
# Export the work tree's commits back to the project:
#   upstream..base  -> base/*.patch
#   base..series    -> patches/NNNN-*.patch, patches/series, and
#                      patches/0000-cover-letter.patch from the branch
#                      description (git branch --edit-description series)
# Idempotent: a patch whose content is unchanged is not rewritten.
#   export.sh            write into the project
#   export.sh --check D  write into D and fail if anything would change
STEP="export"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

check=""
if [ "${1:-}" = --check ]; then
    check=${2:?usage: export.sh --check DIR}
fi
[ -d "$WT/.git" ] || die "no work tree at $WT" "run 'make prepare'"
git -C "$WT" rev-parse -q --verify base >/dev/null || die "the work tree has no 'base' tag" "run 'make prepare'"
[ -z "$(git -C "$WT" status --porcelain --untracked-files=no)" ] ||
    die "$WT has uncommitted changes" "commit them (git -C $WT commit) and export again"

# The version of the series, as it would be posted: [PATCH v4 NN/15]
REROLL=7
fmt=(-c core.abbrev=12 format-patch -q --zero-commit --no-signature
     --signoff --no-renames --encoding=UTF-8 --subject-prefix="PATCH v$REROLL")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/base" "$tmp/patches"
git -C "$WT" "${fmt[@]}" -o "$tmp/base" upstream..base
n=$(git -C "$WT" rev-list --count base..series)
if [ "$n" -gt 0 ]; then
    cover=()
    if git -C "$WT" config branch.series.description >/dev/null; then
        cover=(--cover-letter --cover-from-description=subject)
    fi
    git -C "$WT" "${fmt[@]}" -n "${cover[@]}" -o "$tmp/patches" base..series
    if [ -f "$tmp/patches/0000-cover-letter.patch" ]; then
        # format-patch dates the cover letter "now"; date it like the
        # last patch so that an unchanged series exports unchanged.
        last=$(git -C "$WT" log -1 --format=%aD series)
        sed -i "s/^Date: .*/Date: $last/" "$tmp/patches/0000-cover-letter.patch"
    fi
    for f in "$tmp"/patches/[0-9]*.patch; do
        case "$f" in */0000-cover-letter.patch) continue ;; esac
        basename "$f"
    done > "$tmp/patches/series"
fi

changed=0
sync_dir() {  # sync_dir NAME: make $TOP/NAME hold what $tmp/NAME holds
    local name=$1 dst=$TOP/$1 f
    [ -n "$check" ] && dst=$check/$1 && mkdir -p "$dst" &&
        cp -a "$TOP/$name/." "$dst/" 2>/dev/null
    mkdir -p "$dst"
    for f in "$tmp/$name"/*; do
        [ -e "$f" ] || continue
        if ! cmp -s "$f" "$dst/$(basename "$f")"; then
            cp "$f" "$dst/"
            log "updated $name/$(basename "$f")"
            changed=1
        fi
    done
    for f in "$dst"/*.patch "$dst/series"; do
        [ -e "$f" ] || continue
        if [ ! -e "$tmp/$name/$(basename "$f")" ]; then
            rm -f "$f"
            log "removed $name/$(basename "$f")"
            changed=1
        fi
    done
}
sync_dir base
sync_dir patches

if [ -n "$check" ]; then
    [ "$changed" = 0 ] || die "the work tree differs from base/ and patches/" "run 'make export'"
    log "the work tree matches base/ and patches/"
else
    log "exported the base and $n series patches$([ "$changed" = 1 ] || echo ', nothing changed')"
fi
