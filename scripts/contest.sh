#!/usr/bin/env bash
# Runs youki's OCI conformance suite (contest) group by group against one or
# more runtimes and prints a pass/fail/skip table. Fetches and builds nothing:
# build contest and runtimetest yourself from github.com/youki-dev/youki
# (tests/contest), outside this tree, then:
#
#   scripts/contest.sh CONTEST RUNTIMETEST BUNDLE_TAR RUNTIME...
#
# CONTEST and RUNTIMETEST are the two binaries, BUNDLE_TAR is the suite's
# tests/contest/contest/bundle.tar.gz, each RUNTIME a runc-compatible binary
# (for twinbox: a hard link or copy named twinbox-runc of the twinbox binary;
# contest resolves symbolic links, and twinbox knows it is runc by its name).
# Env: GROUPS_ONLY="g1 g2" limits the groups; GROUP_TIMEOUT (s, default 300).
# Per-test results go to $OUT (default ./contest-results) as RUNTIME.txt.
set -uo pipefail

if [ $# -lt 4 ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
contest=$(realpath -s "$1") runtimetest=$(realpath "$2") bundle=$(realpath "$3")
shift 3
out=$(realpath -m "${OUT:-./contest-results}")
# absolute, without resolving links: twinbox knows it is runc by its name
runtimes=()
for rt in "$@"; do runtimes+=("$(realpath -s "$rt")"); done
mkdir -p "$out"
work=$(mktemp -d /tmp/contest-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp "$bundle" "$work/bundle.tar.gz"
cd "$work" || exit 1

groups=${GROUPS_ONLY:-$("$contest" list 2>/dev/null)}
[ -n "$groups" ] || { echo "contest list gave no groups: is $contest a contest binary?" >&2; exit 1; }

for rtpath in "${runtimes[@]}"; do
    rt=$rtpath
    name=$(basename "$rt")
    log="$out/$name.txt"
    : > "$log"
    for g in $groups; do
        res=$(timeout -k 5 "${GROUP_TIMEOUT:-300}" "$contest" run --runtime "$rtpath" \
            --runtimetest "$runtimetest" -t "$g" 2>&1)
        rc=$?
        lines=$(printf '%s\n' "$res" | grep -E '^[0-9]+ / [0-9]+ : ')
        if [ -z "$lines" ] || [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
            # no per-test lines: the group crashed or hung
            why=crashed; { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && why=timeout
            printf '%s/* : %s\n' "$g" "$why" >> "$log"
            continue
        fi
        printf '%s\n' "$lines" | sed -E "s#^[0-9]+ / [0-9]+ : ([^ ]+) : (.*)\$#$g/\\1 : \\2#" >> "$log"
    done
done

# one table: test, then each runtime's result
printf '%-60s' test
for rt in "$@"; do printf ' %-10s' "$(basename "$rt")"; done
echo
cat "$out"/*.txt | cut -d' ' -f1 | sort -u | while read -r t; do
    printf '%-60s' "$t"
    for rt in "$@"; do
        r=$(grep -F -m1 "$t : " "$out/$(basename "$rt").txt" | sed 's/^[^:]* : //' | cut -c1-10)
        printf ' %-10s' "${r:--}"
    done
    echo
done
for rt in "$@"; do
    f="$out/$(basename "$rt").txt"
    printf '%s: %s ok, %s not ok, %s skipped, %s groups crashed or timed out\n' "$(basename "$rt")" \
        "$(grep -c ' : ok$' "$f")" "$(grep -c ' : not ok' "$f")" "$(grep -c ' : skipped' "$f")" \
        "$(grep -cE ' : (crashed|timeout)$' "$f")"
done
