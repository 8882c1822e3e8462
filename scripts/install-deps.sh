#!/usr/bin/env bash
# Installs what twinbox and its tests need on Debian 12, as root. Idempotent.
set -euo pipefail
# Sourced by demo.sh and test.sh. Namespaces, cgroups and KVM need root: a user
# with sudo is asked for it once and the calling script goes on as root, with the
# user's own Rust toolchain (PATH, HOME, RUSTUP_HOME, CARGO_HOME kept).
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        echo "install-deps: root is needed (namespaces, cgroups, KVM): asking sudo" >&2
        exec sudo --preserve-env=PATH,HOME,RUSTUP_HOME,CARGO_HOME,CARGO_TARGET_DIR,TWINBOX_ROOT \
            TWINBOX_CALLER="$(id -u):$(id -g)" bash "$0" "$@"
    fi
    echo "install-deps: run as root: $0 needs namespaces, cgroups and KVM" >&2
    exit 1
fi
# Started through sudo by a user: what the build writes stays theirs.
if [ -n "${TWINBOX_CALLER:-}" ]; then
    trap 'chown -R "$TWINBOX_CALLER" "${CARGO_TARGET_DIR:-target}" 2>/dev/null || true' EXIT
fi
packages=(busybox-static runc util-linux iproute2 tar gcc libc6-dev pkg-config qemu-system-x86 linux-image-amd64 cpio docker-registry skopeo umoci apache2-utils mmdebstrap chromium xz-utils e2fsprogs docker.io containernetworking-plugins iptables nftables postgresql postgresql-client)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # docker.io's dockerd is only started by the tests that compare against it,
    # on a private socket: keep its package scripts from starting a daemon
    policy=/usr/sbin/policy-rc.d
    added_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && added_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$added_policy" ]; then rm -f "$policy"; fi
fi
if ! command -v cargo >/dev/null 2>&1; then
    for dir in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
        [ -x "$dir/cargo" ] && export PATH="$dir:$PATH" && break
    done
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps: no Rust toolchain: install one with rustup (https://rustup.rs), then run this again" >&2
    exit 1
fi
