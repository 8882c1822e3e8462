#!/usr/bin/env bash
# The main job: build twinbox and its guest init, make the busybox image from
# this host, and take the lesson tour: the same workload as a container and as
# a microVM, measured side by side (kernel, startup, memory, disk, isolation).
# Run as root on Debian 12. Writes an HTML report with the charts too.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
cargo build --release --quiet
tb=./target/release/twinbox
export TWINBOX_ROOT=${TWINBOX_ROOT:-/var/lib/twinbox}
report=${TWINBOX_REPORT:-/tmp/twinbox-tour.html}

echo "== what this host can do"
$tb doctor || true
$tb image bootstrap busybox

status=0
$tb lesson tour --report "$report" || status=$?
echo
echo "report with charts: $report"
echo "more lessons: $tb lesson list"
exit "$status"
