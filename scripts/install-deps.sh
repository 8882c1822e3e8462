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
# sudo kept the user's PATH (for their cargo), which has no sbin directories on
# Debian: without them twinbox and the CNI plugins find no iptables or nft.
case ":$PATH:" in
*:/usr/sbin:*) ;;
*) export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;;
esac
# Started through sudo by a user: what the build writes stays theirs, the
# target dir and what cargo and rustup write in their home (crates.io's
# index and sources, the package cache lock), or their own cargo fails later.
if [ -n "${TWINBOX_CALLER:-}" ]; then
    give_back() {
        chown -R "$TWINBOX_CALLER" "${CARGO_TARGET_DIR:-target}" 2>/dev/null || true
        for dir in "${CARGO_HOME:-$HOME/.cargo}" "${RUSTUP_HOME:-$HOME/.rustup}"; do
            case "$dir" in
            "$HOME"/*) [ -d "$dir" ] && chown -R "$TWINBOX_CALLER" "$dir" 2>/dev/null || true ;;
            esac
        done
    }
    trap give_back EXIT
fi
packages=(busybox-static runc util-linux iproute2 tar gcc libc6-dev pkg-config qemu-system-x86 linux-image-amd64 cpio docker-registry skopeo umoci apache2-utils mmdebstrap chromium xz-utils e2fsprogs erofs-utils docker.io containernetworking-plugins iptables nftables postgresql postgresql-client qemu-system-arm iperf3)
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
# The arch lesson boots Debian's arm64 kernel with Debian's arm64 busybox under
# qemu-system-aarch64: both are fetched once as arm64 packages and kept as two
# files. apt reads the arm64 index into lists of its own here, so neither
# dpkg's architectures nor the system's apt state change.
arm64_dir=/usr/local/share/twinbox/arm64
if [ ! -s "$arm64_dir/vmlinuz" ] || [ ! -s "$arm64_dir/busybox" ]; then
    echo "install-deps: fetching Debian's arm64 kernel and busybox into $arm64_dir"
    fetch=$(mktemp -d)
    chmod 755 "$fetch"
    mkdir -p "$fetch/lists/partial" "$fetch/cache/archives/partial" "$fetch/x" "$arm64_dir"
    arm64_apt=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64
        -o Dir::State::Lists="$fetch/lists" -o Dir::Cache="$fetch/cache"
        -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
    apt-get "${arm64_apt[@]}" update -qq
    kernel_pkg=$(apt-cache "${arm64_apt[@]}" depends linux-image-arm64 | awk '/Depends: linux-image-/ {print $2; exit}')
    (cd "$fetch" && apt-get "${arm64_apt[@]}" download -qq "$kernel_pkg" busybox-static)
    dpkg-deb --fsys-tarfile "$fetch"/linux-image-*.deb | tar -x -C "$fetch/x" --wildcards './boot/vmlinuz-*'
    dpkg-deb -x "$fetch"/busybox-static_*.deb "$fetch/x"
    install -m 644 "$fetch"/x/boot/vmlinuz-* "$arm64_dir/vmlinuz"
    install -m 755 "$fetch/x/bin/busybox" "$arm64_dir/busybox"
    rm -rf "$fetch"
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
