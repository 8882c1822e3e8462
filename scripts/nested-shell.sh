#!/usr/bin/env bash
# Boots the nested test machine (tests/nested/run.sh) with a shell instead of the
# tests: QEMU software emulation with an AMD CPU that has SVM, kvm-amd loaded,
# cgroup2 alone at /sys/fs/cgroup, twinbox on PATH and the busybox image in the
# store. Exit the shell to power the machine off (or press Ctrl-A X). As root.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bin twinbox
exec tests/nested/run.sh --shell "$@"
