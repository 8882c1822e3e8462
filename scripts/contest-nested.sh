#!/usr/bin/env bash
# Runs groups of youki's contest on cgroup v2, in the nested test machine
# (tests/nested/run.sh: kernel 6.1, cgroup2 alone at /sys/fs/cgroup), against
# runc and twinbox, and prints contest's own output. This host is a cgroup v1
# hybrid, where the suite skips its cgroup v2 tests and exec's cgroup_test
# panics. As root, and under the nested lock:
#
#   flock /work/wt/.nested.lock scripts/contest-nested.sh CONTEST RUNTIMETEST BUNDLE_TAR [GROUP...]
#
# GROUPs default to "exec cgroup_v2_cpu update". Uses target/debug/twinbox and
# the host's runc (both carried into the machine with their libraries).
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
contest=$(realpath "$1") runtimetest=$(realpath "$2") bundle=$(realpath "$3")
shift 3
groups=${*:-exec cgroup_v2_cpu update}
runc=$(command -v runc) || { echo "runc not found: apt-get install runc" >&2; exit 2; }
cd "$(dirname "$0")/.."
tools=$(mktemp -d /tmp/contest-nested.XXXXXX)
trap 'rm -rf "$tools"' EXIT
# the harness carries tools found on PATH by name, with their libraries
cp "$contest" "$tools/contest"
cp "$runtimetest" "$tools/runtimetest"
cp "$runc" "$tools/runc"
install -m 755 "$bundle" "$tools/contest-bundle.tar.gz"
cat > "$tools/guest.sh" <<GUEST
set -u
mkdir -p /tmp/c && cd /tmp/c && cp /usr/bin/contest-bundle.tar.gz bundle.tar.gz
# twinbox is runc by its name
cp /usr/local/bin/twinbox /tmp/c/twinbox-runc
for rt in /usr/bin/runc /tmp/c/twinbox-runc; do
    echo "== \$rt"
    timeout 900 contest run --runtime "\$rt" --runtimetest /usr/bin/runtimetest -t $groups 2>&1 |
        grep -E '^# Start|^[0-9]+ / |^\s|panicked' | cut -c1-300
done
GUEST
PATH=$tools:$PATH TWINBOX_NESTED_TOOLS="contest runtimetest contest-bundle.tar.gz runc" \
    tests/nested/run.sh --script "$tools/guest.sh"
