#!/usr/bin/env bash
# The nested environment as a door: boots the nested test machine
# (tests/nested/run.sh: QEMU emulating an AMD CPU with SVM, so kvm-amd gives a
# real KVM on which stock kernels boot) with the current build, runs the shell
# SCRIPT there as root with a fresh TWINBOX_ROOT (busybox bootstrapped), prints
# its output and exits with its status. As root.
#
# Usage: scripts/nested.sh SCRIPT    (exit 2: cannot set up; 3: the machine did
# not finish or the status was lost). TWINBOX_NESTED_TIMEOUT bounds the run.
set -euo pipefail
[ $# = 1 ] || { echo "usage: scripts/nested.sh SCRIPT" >&2; exit 2; }
script=$(realpath "$1")
cd "$(dirname "$0")/.."
cargo build --bin twinbox >&2
exec tests/nested/run.sh --script "$script"
