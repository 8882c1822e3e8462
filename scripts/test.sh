#!/usr/bin/env bash
# The test suite: unit tests, then integration tests of the real binary (root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
cargo build --workspace --all-targets
# The integration tests start containers with real cgroups and namespaces;
# two at a time keeps a 2-core machine responsive.
# --no-fail-fast: every test binary runs and every failure is reported.
cargo test --workspace --no-fail-fast -- --test-threads=2
