#!/bin/sh
# The image disk's file system, ext4 (mke2fs -d) against EROFS (mkfs.erofs),
# measured in the nested environment with twinbox's VMM (bench/README.md,
# "Image disk format"). Runs inside the nested machine:
#
#   debian=$(mktemp -d)/debian-bookworm.tar    # the machine has no mirror
#   TWINBOX_ROOT=$(mktemp -d) twinbox image bootstrap debian:bookworm
#   TWINBOX_ROOT=... twinbox save debian:bookworm -o $debian
#   TWINBOX_BIN=target/release/twinbox TWINBOX_NESTED_IMAGES=$debian \
#       flock /work/wt/.nested.lock scripts/nested.sh bench/disk-format.sh
#
# For each image and file system: the disk's build (its first --rootfs disk
# run), its size, then RUNS boots from the cached disk, each timing the VMM's
# start to the workload, and (debian) reading its binaries and libraries
# cold, by the guest's clock: a walk of /usr and a cat of ~100 MB of files.
RUNS=${RUNS:-2}
images="busybox"
twinbox image inspect debian:bookworm >/dev/null 2>&1 && images="$images debian:bookworm"
work='a=$(cut -d" " -f1 /proc/uptime)
n=$(find /usr /bin /sbin /lib* -xdev 2>/dev/null | wc -l)
b=$(cut -d" " -f1 /proc/uptime)
bytes=$(find /usr/bin /usr/sbin /usr/lib /bin /sbin -xdev -type f 2>/dev/null | xargs cat 2>/dev/null | wc -c)
c=$(cut -d" " -f1 /proc/uptime)
echo "read $n $a $b $bytes $c"'
measure() {
for image in $images; do
    for fs in ext4 erofs; do
        i=0
        while [ $i -le "$RUNS" ]; do
            out=$(TWINBOX_DISK_FS=$fs timeout 600 twinbox vm run --rm --rootfs disk --network none --timings "$image" sh -c "$work" 2>&1)
            boot=$(echo "$out" | sed -n 's/^VMM start to workload *\([0-9.]*\) ms/\1/p')
            if [ $i = 0 ]; then
                disk=$(echo "$out" | grep '^image disk' | tr -s ' ')
                file=$(ls -S /var/lib/twinbox/cache/disks/*.$fs | head -n 1)
                echo "@@fs@@ build $image $fs $(echo "$disk" | sed -n 's/.*built in \([0-9.]*\) ms.*/\1/p') $(stat -c %s "$file") $(du -k "$file" | cut -f1)"
            fi
            echo "@@fs@@ boot $image $fs $boot"
            echo "$out" | sed -n "s/^read /@@fs@@ read $image $fs /p"
            [ -n "$boot" ] || echo "@@fs@@ failed $image $fs: $(echo "$out" | tail -n 5 | tr '\n' '|')"
            i=$((i + 1))
        done
        # the next image's build starts from an empty cache for this fs
        rm -f /var/lib/twinbox/cache/disks/*.$fs
    done
done
}
measure | tee /tmp/fs-results
# Medians per image and file system (the build run's boot included: the
# disk is read cold either way).
echo
echo "image fs build_ms size_bytes allocated_kib boot_ms walk_s read_s read_mib_s"
awk '
    $1 == "@@fs@@" && $2 == "build" { k = $3 " " $4; build[k] = $5; size[k] = $6; alloc[k] = $7; keys[k] = 1 }
    $1 == "@@fs@@" && $2 == "boot" && $5 != "" { k = $3 " " $4; nb[k]++; boot[k, nb[k]] = $5 }
    $1 == "@@fs@@" && $2 == "read" { k = $3 " " $4; nr[k]++; walk[k, nr[k]] = $7 - $6; rd[k, nr[k]] = $9 - $7; by[k] = $8 }
    function med(arr, k, n,   i, j, t, v) {
        for (i = 1; i <= n; i++) v[i] = arr[k, i]
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        return n == 0 ? "-" : (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
    }
    END {
        for (k in keys) {
            w = med(walk, k, nr[k]); r = med(rd, k, nr[k])
            rate = (r != "-" && r > 0) ? sprintf("%.1f", by[k] / 1048576 / r) : "-"
            print k, build[k], size[k], alloc[k], med(boot, k, nb[k]), w, r, rate
        }
    }' /tmp/fs-results
