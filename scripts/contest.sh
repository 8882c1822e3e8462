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
# Env: GROUPS_ONLY="g1 g2" limits the groups; GROUP_TIMEOUT (s, default 300);
# TEST_TIMEOUT (s, default 60) bounds each test of a group run test by test.
# Per-test results go to $OUT (default ./contest-results) as RUNTIME.txt, the
# reasons contest gave for each failure or skip as RUNTIME.reasons.
#
# A group whose run crashes or times out is run again one test at a time (the
# names read from the suite's sources next to BUNDLE_TAR), so one test that
# panics or hangs costs only its own result: contest runs a group's tests in
# parallel threads and prints nothing until all have returned, and a panic in
# one (exec's cgroup_test on a cgroup v1 host) aborts the whole group.
# After every contest run, what it left behind in this run's private TMPDIR is
# cleaned up: containers still waiting for `start` (a test whose start came
# before its create had finished), their processes, and mounts.
set -uo pipefail

if [ $# -lt 4 ]; then
    sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
contest=$(realpath -s "$1") runtimetest=$(realpath "$2") bundle=$(realpath "$3")
shift 3
out=$(realpath -m "${OUT:-./contest-results}")
# the suite's sources, for the test names of a group run test by test
src=$(dirname "$bundle")/src/tests
# absolute, without resolving links: twinbox knows it is runc by its name
runtimes=()
for rt in "$@"; do runtimes+=("$(realpath -s "$rt")"); done
mkdir -p "$out"
work=$(mktemp -d /tmp/contest-run.XXXXXX)
# searchable as /tmp is: a container of a user namespace reaches its bundle
# through here as an unmapped user (mktemp -d made it 0700)
chmod 755 "$work"
mkdir "$work/tmp"

# Processes this run left behind: any whose working directory or open files
# are in $work, whose command line names it, or whose root is a bundle of
# $work (a container). One find and two greps for the whole of /proc; the
# pattern's [.] keeps grep from matching its own command line.
leftovers() {
    local pat
    pat=$(basename "$work" | sed 's/\./[.]/')
    {
        find /proc/[0-9]*/cwd /proc/[0-9]*/fd -maxdepth 1 -lname "$work/*" 2>/dev/null
        grep -lE "$pat/" /proc/[0-9]*/cmdline 2>/dev/null
        grep -lE "^[0-9]+ [0-9]+ [0-9]+:[0-9]+ [^ ]*$pat/[^ ]* / " /proc/[0-9]*/mountinfo 2>/dev/null
    } | cut -d/ -f3 | sort -u | grep -vx "$$"
}

cleanup() {
    local pids m
    pids=$(leftovers)
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    # deepest first; lazily, as a dying container may still hold one
    awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null; done
    rm -rf "${work:?}/tmp" 2>/dev/null
    mkdir -p "$work/tmp"
}
touch "$work/start"
# Containers the suite failed to delete leave their cgroups (runc's under its
# own cgroup, twinbox's under twinbox-runtime/), named after contest's ids,
# which are UUIDs: remove the empty ones made since this run began.
stale_cgroups() {
    find /sys/fs/cgroup -maxdepth 5 -depth -type d -newer "$work/start" -regextype egrep \
        -regex '.*/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' \
        -exec rmdir {} + 2>/dev/null
}
trap 'cleanup; stale_cgroups; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# contest reads bundle.tar.gz from its working directory; this script stays
# outside $work, so that no process of its own is in there
cp "$bundle" "$work/bundle.tar.gz"

groups=${GROUPS_ONLY:-$(cd "$work" && "$contest" list 2>/dev/null)}
[ -n "$groups" ] || { echo "contest list gave no groups: is $contest a contest binary?" >&2; exit 1; }

# contest run; prints "group/test : result" lines to $log and each failure's
# or skip's first reason line to $reasons. Returns contest's exit status, or
# 124 on timeout.
run_contest() { # timeout runtime group-or-test
    local res rc
    # only stdio reaches contest: fd_control/only_stdio passes --preserve-fds
    # 100, so a descriptor this shell inherited would show up in the container
    res=$(
        cd "$work" || exit 1
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        TMPDIR="$work/tmp" exec timeout -k 5 "$1" "$contest" run \
            --runtime "$2" --runtimetest "$runtimetest" -t "$3" 2>&1
    )
    rc=$?
    cleanup
    [ $rc -eq 137 ] && rc=124
    # "N / M : name : result", then a tab-indented reason; names may hold spaces
    printf '%s\n' "$res" | awk -v g="${3%%::*}" -v lf="$log" -v why="$reasons" '
        /^[0-9]+ \/ [0-9]+ : / {
            line = $0; sub(/^[0-9]+ \/ [0-9]+ : /, "", line)
            n = split(line, parts, " : "); result = parts[n]
            name = substr(line, 1, length(line) - length(result) - 3)
            gsub(/ /, "_", name); t = g "/" name
            print t " : " result >> lf
            want = (result != "ok"); next
        }
        want && /^\t/ { sub(/^\t/, ""); print t " : " $0 >> why; want = 0 }'
    return $rc
}

# The tests a group defines, read from the suite's sources (Test::new and
# ConditionalTest::new in the group's directory); empty when not found.
tests_of() { # group
    local f
    [ -d "$src" ] || return 0
    f=$(grep -rlF "TestGroup::new(\"$1\")" "$src" 2>/dev/null | head -1)
    # a group of its own making names itself in get_name
    [ -n "$f" ] || f=$(grep -rlF "\"$1\"" "$src" 2>/dev/null | xargs -r grep -l 'fn get_name' | head -1)
    [ -n "$f" ] || return 0
    [ "$(basename "$f")" = mod.rs ] && f=$(dirname "$f")
    find "$f" -name '*.rs' -exec cat {} + |
        perl -0777 -ne 'print "$1\n" while /(?:Conditional)?Test::new\(\s*"([^" ]+)"/g' | sort -u
}

for rtpath in "${runtimes[@]}"; do
    name=$(basename "$rtpath")
    log="$out/$name.txt" reasons="$out/$name.reasons"
    : > "$log"
    : > "$reasons"
    for g in $groups; do
        before=$(wc -l < "$log")
        run_contest "${GROUP_TIMEOUT:-300}" "$rtpath" "$g"
        rc=$?
        if [ "$(wc -l < "$log")" -gt "$before" ] && [ $rc -ne 124 ]; then
            continue
        fi
        # no per-test lines (a panic) or a timeout: drop partial lines, then
        # run the group's tests one by one
        why=crashed mark=crashed
        [ $rc -eq 124 ] && why="timed out after ${GROUP_TIMEOUT:-300} s" mark=timeout
        head -n "$before" "$log" > "$log.tmp" && mv "$log.tmp" "$log"
        echo "$g/* : group $why; its tests run one at a time" >> "$reasons"
        tests=$(tests_of "$g")
        if [ -z "$tests" ]; then
            printf '%s/* : %s\n' "$g" "$mark" >> "$log"
            continue
        fi
        for t in $tests; do
            before=$(wc -l < "$log")
            run_contest "${TEST_TIMEOUT:-60}" "$rtpath" "$g::$t"
            rc=$?
            [ "$(wc -l < "$log")" -gt "$before" ] && continue
            if [ $rc -eq 124 ]; then
                echo "$g/$t : timeout" >> "$log"
                echo "$g/$t : hung for ${TEST_TIMEOUT:-60} s alone" >> "$reasons"
            else
                echo "$g/$t : crashed" >> "$log"
                echo "$g/$t : contest exited $rc with no result (a panic in the test)" >> "$reasons"
            fi
        done
    done
done

# one table: test, then each runtime's result
printf '%-60s' test
for rt in "$@"; do printf ' %-10s' "$(basename "$rt")"; done
echo
cat "$out"/*.txt | sed 's/ : .*//' | sort -u | while read -r t; do
    printf '%-60s' "$t"
    for rt in "$@"; do
        r=$(grep -F -m1 "$t : " "$out/$(basename "$rt").txt" | sed 's/^[^:]* : //' | cut -c1-10)
        printf ' %-10s' "${r:--}"
    done
    echo
done
for rt in "$@"; do
    f="$out/$(basename "$rt").txt"
    printf '%s: %s ok, %s not ok, %s skipped, %s crashed or timed out\n' "$(basename "$rt")" \
        "$(grep -c ' : ok$' "$f")" "$(grep -c ' : not ok' "$f")" "$(grep -c ' : skipped' "$f")" \
        "$(grep -cE ' : (crashed|timeout)$' "$f")"
done
