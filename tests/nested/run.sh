#!/usr/bin/env bash
# The nested test environment: boots the distribution kernel in QEMU software
# emulation with an emulated AMD CPU that has SVM, so the emulated machine gets a
# real KVM (kvm-amd) on which stock kernels boot, and runs tests/nested/guest-tests.sh
# there as PID 1. The guest prints one line per test to the console:
#
#     @@nested@@ <name> ok|fail|skip <details>
#
# and `@@nested@@ done` at the end. tests/nested.rs runs this script and asserts
# on those lines; scripts/nested-shell.sh boots the same machine interactively.
#
# Usage: tests/nested/run.sh [--shell | --script FILE] [--keep]
#   --shell   start a shell in the guest instead of the tests (interactive)
#   --script FILE  run the shell script FILE in the guest instead of the tests, as
#             root with a fresh TWINBOX_ROOT (busybox bootstrapped); its output
#             is printed and its exit status is this script's (scripts/nested.sh)
#   --keep    keep the work directory (initramfs, console log) and print its path
# Environment:
#   TWINBOX_BIN              twinbox binary (default: target/debug/twinbox)
#   TWINBOX_INIT             guest init (default: the one twinbox embeds; a twinbox-init beside TWINBOX_BIN, else
#                            target/{release,debug}/twinbox-init, if scripts/build-init.sh ran)
#   TWINBOX_NESTED_KERNEL    outer and guest kernel (default: newest /boot/vmlinuz-*)
#   TWINBOX_NESTED_TIMEOUT   seconds for the whole QEMU run (default 2400)
#   TWINBOX_NESTED_LOG       also copy the console log to this file
#   TWINBOX_NESTED_WORKDIR   where the work directory is made (default /var/tmp)
#   TWINBOX_NESTED_TOOLS     more host tools to carry, with their libraries, for
#                            debugging by hand (e.g. "tcpdump strace")
#   TWINBOX_NESTED_IMAGES    image archives (`twinbox save`, space-separated paths)
#                            loaded into the guest's store before the tests or the
#                            script (the machine has no network to pull or bootstrap)
# Exit codes: 0 every test ok or skipped, 1 a test failed, 2 cannot set up
# (missing QEMU, kernel, ...), 3 the guest did not finish in time or crashed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
here="$repo/tests/nested"

shell=0
keep=0
script=""
while [ $# -gt 0 ]; do
    case "$1" in
        --shell) shell=1 ;;
        --keep) keep=1 ;;
        --script)
            [ $# -ge 2 ] || { echo "nested: --script needs a file" >&2; exit 2; }
            script=$2
            shift
            ;;
        *) echo "nested: unknown argument $1: use --shell, --script FILE or --keep" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$script" ] && { [ ! -f "$script" ] || [ ! -r "$script" ]; }; then
    echo "nested: script $script is not a readable file" >&2
    exit 2
fi

die() {
    echo "nested: $*" >&2
    exit 2
}

# --- what the environment needs from the host --------------------------------

qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || die "qemu-system-x86_64 not found: apt-get install qemu-system-x86 (scripts/install-deps.sh does)"
command -v cpio >/dev/null || die "cpio not found: apt-get install cpio (scripts/install-deps.sh does)"

busybox=""
for b in /bin/busybox /usr/bin/busybox; do
    # ldd fails on a static executable
    if [ -f "$b" ] && ! ldd "$b" >/dev/null 2>&1; then
        busybox=$b
        break
    fi
done
[ -n "$busybox" ] || die "no static busybox: apt-get install busybox-static"

kernel=${TWINBOX_NESTED_KERNEL:-}
if [ -z "$kernel" ]; then
    kernel=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
fi
[ -n "$kernel" ] && [ -r "$kernel" ] ||
    die "no readable kernel in /boot (vmlinuz-*): apt-get install linux-image-amd64 (scripts/install-deps.sh does), as root"
version=${kernel##*/vmlinuz-}
moddir=/lib/modules/$version
[ -f "$moddir/modules.dep" ] ||
    die "no $moddir/modules.dep for $kernel: install the linux-image package that matches it"

twinbox=${TWINBOX_BIN:-$repo/target/debug/twinbox}
[ -x "$twinbox" ] || die "no twinbox binary at $twinbox: run cargo build (or set TWINBOX_BIN)"

init=${TWINBOX_INIT:-}
if [ -z "$init" ]; then
    # `twinbox vm run` looks next to its own binary first; so does this.
    for c in "$(dirname "$twinbox")/twinbox-init" "$repo/target/release/twinbox-init" \
        "$repo/target/debug/twinbox-init"; do
        [ -x "$c" ] && init=$c && break
    done
fi

timeout_s=${TWINBOX_NESTED_TIMEOUT:-2400}
[[ "$timeout_s" =~ ^[0-9]+$ ]] && [ "$timeout_s" -gt 0 ] ||
    die "TWINBOX_NESTED_TIMEOUT=$timeout_s is not a number of seconds: use e.g. 600"

# Modules loaded in the guest, in this order with their dependencies first:
# KVM for AMD-V, and overlay for the container engine's root filesystems.
outer_modules=(irqbypass kvm ccp kvm-amd overlay)
# What CNI networking needs (built into the CI host's kernel, modules in
# Debian's): the bridge and veth plugins' devices, the VMs' taps, and the
# netfilter pieces iptables-nft uses for NAT, portmap and the firewall plugin.
net_modules=(bridge veth tun nf_tables nft_compat nft_chain_nat nft_masq xt_nat xt_MASQUERADE
    xt_mark xt_multiport xt_comment xt_conntrack xt_addrtype)
# Modules the inner VMs may need from the guest kernel's /lib/modules (virtio
# devices on the MMIO transport, ext4 and erofs for disk images).
inner_modules=(virtio_mmio virtio_blk virtio_net virtio_console crc32c_generic ext4 erofs overlay)

mkdir -p "${TWINBOX_NESTED_WORKDIR:-/var/tmp}"
work=$(mktemp -d "${TWINBOX_NESTED_WORKDIR:-/var/tmp}/twinbox-nested.XXXXXX")
cleanup() {
    if [ "$keep" = 1 ]; then
        echo "nested: work directory kept at $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,proc,sys,dev,tmp,run,etc,root,boot}
mkdir -p "$root"/var/lib/twinbox "$root"/etc/nested
chmod 1777 "$root/tmp"

# --- busybox and its applets ---------------------------------------------------
cp "$busybox" "$root/bin/busybox"
"$busybox" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# --- twinbox (dynamically linked: its libraries and the loader come along) ----
# Debug info is most of a debug binary's size and only slows the emulated boot.
objcopy --strip-debug "$twinbox" "$root/usr/local/bin/twinbox"
ldd "$twinbox" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
# --- tools twinbox runs: mke2fs builds the images' VM disks; iproute2's ip, ----
# which the network lesson shows the host side with (busybox's has no `master`)
for tool in mke2fs ip; do
    path=$(command -v "$tool" || true)
    [ -n "$path" ] || die "$tool not found: apt-get install e2fsprogs iproute2 (scripts/install-deps.sh does)"
    cp -L "$path" "$root/usr/sbin/$tool"
    ldd "$path" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
done
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
# mkfs.erofs where the host has erofs-utils: twinbox's default image disks are
# EROFS where it runs (ext4 otherwise, as on a host without it)
if path=$(command -v mkfs.erofs); then
    cp -L "$path" "$root/usr/sbin/mkfs.erofs"
    ldd "$path" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
fi
# The lessons' measuring tools, as on the CI host: iperf3 (the network
# lesson's client and loopback server) and psql (the exercise lesson's
# client, found where Debian installs it). Missing ones are said, and the
# lessons that need them say so again in the guest.
carry() {
    mkdir -p "$root$(dirname "$2")"
    cp -L "$1" "$root$2"
    ldd "$1" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
if path=$(command -v iperf3); then
    carry "$path" /usr/bin/iperf3
else
    echo "nested: no iperf3 on this host (apt-get install iperf3): the network lesson will fail" >&2
fi
psql=$(ls -1 /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$psql" ]; then
    carry "$psql" "$psql"
else
    echo "nested: no psql on this host (apt-get install postgresql-client): the exercise lesson will fail" >&2
fi
# The lessons' base images, bootstrapped here from this host's files (the
# guest has neither the packages nor ldd) and loaded into the guest's store
# like TWINBOX_NESTED_IMAGES: iperf3 for the network lesson, postgres-base
# for the exercise lesson.
mkdir -p "$root/etc/nested/images" "$work/base-store"
for base in iperf3 postgres; do
    if TWINBOX_ROOT=$work/base-store "$twinbox" image bootstrap "$base" >"$work/base.out" 2>&1; then
        name=$(cut -d' ' -f1 "$work/base.out")
        TWINBOX_ROOT=$work/base-store "$twinbox" save "$name" -o "$root/etc/nested/images/${name%%:*}.tar" ||
            die "saving $name for the guest failed"
    else
        echo "nested: no $base base image for the guest: $(tail -n 1 "$work/base.out")" >&2
    fi
done
rm -rf "$work/base-store" "$work/base.out"
if [ -n "${TWINBOX_NESTED_IMAGES:-}" ]; then
    mkdir -p "$root/etc/nested/images"
    for archive in $TWINBOX_NESTED_IMAGES; do
        [ -f "$archive" ] || die "TWINBOX_NESTED_IMAGES: $archive is not a file"
        cp "$archive" "$root/etc/nested/images/"
    done
fi
for tool in ${TWINBOX_NESTED_TOOLS:-}; do
    path=$(command -v "$tool" || true)
    [ -n "$path" ] || die "TWINBOX_NESTED_TOOLS: $tool not found on this host"
    cp -L "$path" "$root/usr/bin/$tool"
    # a static binary or a data file has no libraries (ldd fails on it)
    { ldd "$path" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | sort -u | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
done
# --- QEMU, the peer the VMM is compared with on the same nested KVM ------------
# Only the x86 firmware it needs for -M microvm/q35 with -kernel comes along.
qemu_in_guest=/usr/bin/qemu-system-x86_64
cp "$qemu" "$root$qemu_in_guest"
ldd "$qemu" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
mkdir -p "$root/usr/share/qemu" "$root/usr/share/seabios"
for f in qboot.rom bios-microvm.bin linuxboot.bin linuxboot_dma.bin kvmvapic.bin multiboot.bin \
    multiboot_dma.bin pvh.bin; do
    [ -e "/usr/share/qemu/$f" ] && cp -L "/usr/share/qemu/$f" "$root/usr/share/qemu/$f"
done
cp -L /usr/share/seabios/bios-256k.bin "$root/usr/share/seabios/" 2>/dev/null || true
ln -sf ../seabios/bios-256k.bin "$root/usr/share/qemu/bios-256k.bin"

# --- CNI networking: the reference plugins and iptables (nf_tables backend) ----
# The plugins are staged in /etc/nested/cni, not where twinbox looks: the
# checks that compare VMs and containers without networking run first, and
# the network checks (or a --script) put them in place with `cni-enable`.
plugin_dir=""
for d in /usr/lib/cni /opt/cni/bin /usr/libexec/cni; do
    [ -x "$d/bridge" ] && plugin_dir=$d && break
done
if [ -n "$plugin_dir" ] && command -v xtables-nft-multi >/dev/null; then
    mkdir -p "$root/etc/nested/cni"
    for p in bridge host-local portmap firewall loopback tuning; do
        [ -e "$plugin_dir/$p" ] && cp -L "$plugin_dir/$p" "$root/etc/nested/cni/$p"
    done
    xt=$(command -v xtables-nft-multi)
    cp -L "$xt" "$root/usr/sbin/xtables-nft-multi"
    ldd "$xt" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
        ln -sf xtables-nft-multi "$root/usr/sbin/$name"
    done
    # realpath: iptables looks in its compiled-in /usr/lib/.../xtables, and
    # ldd names /lib/... (a symlink on the host, a real directory here)
    xtlib=$(realpath "$(dirname "$(ldd "$xt" | grep -o '/[^ ]*libxtables[^ ]*' | head -n 1)")/xtables")
    if [ -d "$xtlib" ]; then
        mkdir -p "$root$xtlib"
        cp -L "$xtlib"/*.so "$root$xtlib/"
    fi
    printf '#!/bin/sh\nmkdir -p /usr/lib/cni && cp /etc/nested/cni/* /usr/lib/cni/\n' >"$root/usr/local/bin/cni-enable"
    chmod 755 "$root/usr/local/bin/cni-enable"
else
    echo "nested: no CNI plugins or xtables-nft-multi on this host: the network checks will be skipped" >&2
fi

if [ -n "$init" ]; then
    cp "$init" "$root/usr/local/bin/twinbox-init"
    echo "nested: guest init $init" >&2
else
    echo "nested: guest init: the one embedded in $twinbox" >&2
fi

# --- the guest kernel and the modules both levels load -------------------------
cp "$kernel" "$root/boot/vmlinuz-$version"
# The same kernel as an ELF vmlinux (kept out of /boot so it is not the default):
# `vm run --kernel` boots it through its PVH entry. Distribution bzImages carry
# it xz-compressed after the setup code.
extract_vmlinux() {
    local hex offset
    hex=$(od -A d -t x1 -v -w1 "$kernel" | awk '
        { b[NR % 6] = $2; off[NR % 6] = $1 }
        NR >= 6 {
            s = b[(NR - 5) % 6] b[(NR - 4) % 6] b[(NR - 3) % 6] b[(NR - 2) % 6] b[(NR - 1) % 6] b[NR % 6]
            if (s == "fd377a585a00") { print off[(NR - 5) % 6] + 0; exit }
        }')
    [ -n "$hex" ] || return 1
    offset=$hex
    tail -c +$((offset + 1)) "$kernel" | xz -dc 2>/dev/null >"$1" || true
    [ "$(head -c 4 "$1" | od -A n -t x1 | tr -d ' ')" = 7f454c46 ]
}
mkdir -p "$root/opt"
if command -v xz >/dev/null && extract_vmlinux "$root/opt/vmlinux-$version"; then
    echo "nested: ELF vmlinux extracted for the PVH test ($(du -h "$root/opt/vmlinux-$version" | cut -f1))" >&2
else
    rm -f "$root/opt/vmlinux-$version"
    echo "nested: could not extract an ELF vmlinux from $kernel (xz missing, or not xz-compressed): the PVH test will fail" >&2
fi
mkdir -p "$root$moddir"
cp "$moddir"/modules.* "$root$moddir/"
# modules.dep: "kernel/x/a.ko: kernel/y/b.ko kernel/z/c.ko", dependencies of a
# dependency listed too; the ones listed last must load first (modprobe's order).
module_path() {
    local name=${1//-/_}
    awk -F: -v want="$name" '{
        base = $1; sub(/.*\//, "", base); sub(/\.ko(\.[a-z]+)?$/, "", base); gsub(/-/, "_", base)
        if (base == want) { print $1; exit }
    }' "$moddir/modules.dep"
}
load_order() {
    local path deps dep
    for name in "$@"; do
        path=$(module_path "$name")
        [ -n "$path" ] || die "module $name is not in $moddir/modules.dep"
        deps=$(awk -F: -v p="$path" '$1 == p { print $2 }' "$moddir/modules.dep")
        for dep in $(echo "$deps" | tr ' ' '\n' | tac); do echo "$dep"; done
        echo "$path"
    done | awk 'NF && !seen[$0]++'
}
load_order "${outer_modules[@]}" "${net_modules[@]}" >"$root/etc/nested/modules"
{
    cat "$root/etc/nested/modules"
    load_order "${inner_modules[@]}"
} | while read -r m; do
    mkdir -p "$root$moddir/$(dirname "$m")"
    cp "$moddir/$m" "$root$moddir/$m"
done

# --- the rest of the guest's files ---------------------------------------------
cp "$here/guest-tests.sh" "$root/init"
cp "$here/network-checks.sh" "$root/etc/nested/network-checks.sh"
cp "$here/lesson-checks.sh" "$root/etc/nested/lesson-checks.sh"
chmod 755 "$root/init"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"
echo nested >"$root/etc/hostname"
if [ "$shell" = 1 ]; then
    touch "$root/etc/nested/shell"
fi
if [ -n "$script" ]; then
    cp "$script" "$root/etc/nested/script"
fi

cpio_file=$work/initramfs.cpio
# Uncompressed: decompressing in software emulation costs more than reading.
(cd "$root" && find . -print | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$cpio_file"
size_mib=$(($(stat -c %s "$cpio_file") / 1048576))
echo "nested: kernel $version, initramfs ${size_mib} MiB, timeout ${timeout_s}s" >&2

# --- boot ------------------------------------------------------------------------
# One emulated CPU: with two, a run on a loaded 2-core host once ended in soft
# lockups of both CPUs (nested SVM under multi-threaded TCG); inner VMs still
# get their --cpus as threads.
qemu_args=(
    -accel tcg -cpu EPYC,+svm -m 2048 -smp 1
    -no-reboot -kernel "$kernel" -initrd "$cpio_file"
    -append "console=ttyS0 panic=-1 reboot=k quiet"
)
if [ "$shell" = 1 ]; then
    "$qemu" "${qemu_args[@]}" -nographic
    exit 0
fi

log=$work/console.log
start=$(date +%s)
set +e
# QEMU is stopped with SIGTERM at the deadline, SIGKILL 10 s later. Its notes
# that TCG lacks some EPYC features (rdseed, ...) are expected and dropped.
timeout -k 10 "$timeout_s" "$qemu" "${qemu_args[@]}" \
    -display none -monitor none -serial stdio </dev/null \
    2> >(grep -v "TCG doesn't support requested feature" >&2) | tee "$log" | tr -d '\r'
status=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - start))
[ -z "${TWINBOX_NESTED_LOG:-}" ] || cp "$log" "$TWINBOX_NESTED_LOG"

if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "nested: the emulated machine did not finish within ${timeout_s}s (TWINBOX_NESTED_TIMEOUT) and was killed" >&2
    exit 3
fi
if ! tr -d '\r' <"$log" | grep -q '^@@nested@@ done'; then
    echo "nested: the emulated machine stopped (qemu exit $status, ${elapsed}s) before the tests finished: see the console output above" >&2
    exit 3
fi
echo "nested: finished in ${elapsed}s" >&2
if [ -n "$script" ]; then
    code=$(tr -d '\r' <"$log" | sed -n 's/^@@nested@@ script-exit \([0-9]*\)$/\1/p' | tail -n 1)
    [ -n "$code" ] || { echo "nested: the script's exit status was not reported" >&2; exit 3; }
    exit "$code"
fi
if tr -d '\r' <"$log" | grep -q '^@@nested@@ [^ ]* fail'; then
    exit 1
fi
exit 0
