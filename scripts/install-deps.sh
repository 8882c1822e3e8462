#!/usr/bin/env bash
# Installs what twinbox and its tests need on Debian 12, as root. Idempotent.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: run as root (sudo $0)" >&2
    exit 1
fi
packages=(busybox-static runc util-linux iproute2 tar gcc libc6-dev pkg-config qemu-system-x86 linux-image-amd64 cpio docker-registry skopeo umoci apache2-utils mmdebstrap chromium xz-utils)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
