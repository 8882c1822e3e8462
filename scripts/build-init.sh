#!/usr/bin/env bash
# Builds twinbox-init, the guest's PID 1, as a static executable by hand and
# puts it next to the twinbox binaries. Not needed for a normal build: the
# microvm crate's build.rs embeds the same init in twinbox.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
out=${CARGO_TARGET_DIR:-target}
# crt-static links glibc's libc.a (from libc6-dev): the guest has no loader.
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" \
    cargo build --quiet -p twinbox-init --release --target "$target"
built="$out/$target/release/twinbox-guest-init"
# A static executable has no program interpreter (PT_INTERP).
if ! headers=$(readelf -l "$built"); then
    echo "build-init: cannot read $built with readelf (install binutils)" >&2
    exit 1
fi
if grep -q INTERP <<<"$headers"; then
    echo "build-init: $built is dynamically linked: crt-static did not apply" >&2
    exit 1
fi
for dir in "$out/debug" "$out/release"; do
    mkdir -p "$dir"
    install -m 0755 "$built" "$dir/twinbox-init.tmp"
    mv -f "$dir/twinbox-init.tmp" "$dir/twinbox-init"
done
echo "build-init: $(du -h "$built" | cut -f1) static init in $out/debug and $out/release"
