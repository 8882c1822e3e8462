#!/usr/bin/env bash
# The main job: build twinbox, make the busybox image from this host, and run a
# short tour of what a container is. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
cargo build --release --quiet
scripts/build-init.sh
tb=./target/release/twinbox
export TWINBOX_ROOT=${TWINBOX_ROOT:-/var/lib/twinbox}

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "== what this host can do"
$tb doctor || true
step $tb image bootstrap busybox
step $tb images

echo
echo "== a container shares the host's kernel"
echo "host kernel:      $(uname -r)"
echo "container kernel: $($tb run --rm busybox uname -r)"

echo
echo "== but it has its own processes, host name and network"
step $tb run --rm --hostname demo busybox sh -c 'echo "I am PID $$ on $(hostname)"; ps; ls /sys/class/net'

echo
echo "== and cgroups limit what it may use"
step $tb run --rm --memory 16m busybox sh -c 'head -c 64m /dev/zero | tail > /dev/null' || echo "(exit $?: the kernel's OOM killer stopped the memory hog at 16 MiB)"

echo
echo "== detached containers keep running; their output is logged"
$tb rm -f demo-ticker >/dev/null 2>&1 || true
id=$($tb run -d --name demo-ticker busybox sh -c 'for i in 1 2 3; do echo tick $i; sleep 0.3; done; sleep 30')
sleep 1.2
step $tb ps
step $tb logs demo-ticker
step $tb stop -t 1 demo-ticker
step $tb rm demo-ticker
echo
echo "done: container ${id:0:12} came and went; try \`$tb run --rm -it busybox\` yourself"
