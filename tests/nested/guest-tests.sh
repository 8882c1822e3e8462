#!/bin/sh
# PID 1 of the nested test machine (tests/nested/run.sh packs it as /init).
# Prepares a host with a real KVM (kvm-amd) and cgroup v2 alone, then runs each
# test and prints one line per test on the console:
#
#     @@nested@@ <name> ok|fail|skip <details>
#
# then `@@nested@@ done`, and powers the machine off.
export PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin
export HOME=/root
# inner guests boot under nested KVM inside TCG: on a loaded CI machine a stock
# kernel can need more than the default 60 s to reach its init
export TWINBOX_BOOT_TIMEOUT=300
# iptables runs emulated too: the portmap plugin's ADD has taken over 30 s
export TWINBOX_CNI_TIMEOUT=180

# Stage 1: the initramfs root (rootfs) cannot be pivot_root'ed away, and the
# container runtime pivots into each container's root: copy everything to a
# tmpfs and make that the root.
if [ ! -e /.nested-stage2 ]; then
    mkdir -p /newroot
    mount -t tmpfs -o mode=0755 tmpfs /newroot
    for entry in /*; do
        case "$entry" in
            /newroot) ;;
            /proc | /sys | /dev) mkdir -p "/newroot$entry" ;;
            *) cp -a "$entry" /newroot/ ;;
        esac
    done
    touch /newroot/.nested-stage2
    exec switch_root /newroot /init
fi

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# Only emergencies on the console: kernel messages (an OOM kill, ...) would
# otherwise land in the middle of result lines.
dmesg -n 1
hostname -F /etc/hostname
# Loopback up, as on any host (published ports are fetched from 127.0.0.1).
ip link set lo up

# One result line; details are folded onto that line and shortened.
result() {
    name=$1
    status=$2
    shift 2
    details=$(printf '%s' "$*" | tr '\n\r\t' '   ' | tr -s ' ' | cut -c1-600)
    echo "@@nested@@ $name $status $details"
}

# Seconds since boot with one decimal, for per-test durations.
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# run SECS CMD...: runs CMD with a hard time limit, sets $out (stdout and stderr)
# and $code (124+SIGKILL = 137 when the limit struck).
run() {
    limit=$1
    shift
    out=$(timeout -s KILL "$limit" "$@" 2>&1)
    code=$?
}

# --- the host side of the nested machine ----------------------------------------

t=$(now)
failed=""
while read -r module; do
    [ -n "$module" ] || continue
    # No NX huge-page mitigation: its recovery thread is one more thing the
    # emulated CPU has to run, and there is nothing to mitigate in a test VM.
    case "$module" in */kvm.ko*) params="nx_huge_pages=off" ;; *) params="" ;; esac
    if ! msg=$(insmod "/lib/modules/$(uname -r)/$module" $params 2>&1); then
        failed="$failed $module ($msg)"
    fi
done </etc/nested/modules
loaded=$(sed 's,.*/,,; s,\.ko.*,,' /etc/nested/modules | tr '\n' ' ')
if [ -z "$failed" ]; then
    result modules ok "loaded $loaded($(since "$t"))"
else
    result modules fail "insmod failed:$failed"
fi

if [ -c /dev/kvm ]; then
    result kvm-device ok "/dev/kvm is a character device; svm in cpuinfo: $(grep -c -w svm /proc/cpuinfo) cpus"
else
    result kvm-device fail "no /dev/kvm after loading kvm-amd; cpu flags: $(grep -m1 '^flags' /proc/cpuinfo)"
fi

mount -t cgroup2 cgroup2 /sys/fs/cgroup
v1=$(awk '$3 == "cgroup"' /proc/mounts)
if [ -f /sys/fs/cgroup/cgroup.controllers ] && [ -z "$v1" ]; then
    result cgroup2-alone ok "controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
else
    result cgroup2-alone fail "cgroup mounts: $(grep cgroup /proc/mounts)"
fi

mount -t tmpfs -o mode=0700 tmpfs /var/lib/twinbox
export TWINBOX_ROOT=/var/lib/twinbox

if [ -e /etc/nested/shell ]; then
    twinbox image bootstrap busybox
    echo "nested: kvm-amd loaded, cgroup2 at /sys/fs/cgroup, store $TWINBOX_ROOT; exit the shell to power off"
    setsid cttyhack sh -l
    poweroff -f
fi

t=$(now)
run 300 twinbox image bootstrap busybox
if [ "$code" = 0 ]; then
    result bootstrap ok "$(since "$t")"
else
    result bootstrap fail "exit $code: $out"
fi
# Image archives the harness carried (TWINBOX_NESTED_IMAGES): loaded, then
# the archive's copy is dropped (the machine's memory is its disk).
for archive in /etc/nested/images/*.tar; do
    [ -f "$archive" ] || continue
    t=$(now)
    run 600 twinbox load -i "$archive"
    rm -f "$archive"
    if [ "$code" = 0 ]; then
        result "load-$(basename "$archive" .tar)" ok "$(echo "$out" | tail -n 1) ($(since "$t"))"
    else
        result "load-$(basename "$archive" .tar)" fail "exit $code: $out"
    fi
done

# scripts/nested.sh SCRIPT: run it instead of the tests, report its status.
if [ -e /etc/nested/script ]; then
    (cd /root && sh /etc/nested/script) </dev/null 2>&1
    echo "@@nested@@ script-exit $?"
    echo "@@nested@@ done"
    poweroff -f
fi

# --- twinbox doctor ---------------------------------------------------------------

run 60 twinbox doctor
cgroups_line=$(echo "$out" | grep -E '^[a-z]+ +cgroups ')
kvm_line=$(echo "$out" | grep -E '^[a-z]+ +kvm ')
kernel_line=$(echo "$out" | grep -E '^[a-z]+ +guest kernel ')
if echo "$cgroups_line" | grep -qE '^ok +cgroups +v2$' &&
    echo "$kvm_line" | grep -qE '^ok +kvm +/dev/kvm \(AMD-V\)'; then
    result doctor ok "$cgroups_line | $kvm_line | $kernel_line"
else
    result doctor fail "exit $code: $out"
fi

# --- the container engine's cgroup v2 path ---------------------------------------

cg=/sys/fs/cgroup/twinbox

container_id() { twinbox inspect "$1" | sed -n 's/^ *"Id": *"\([0-9a-f]*\)".*/\1/p' | head -n 1; }

# The limit flags land in the v2 files, and the cgroup goes with the container.
t=$(now)
run 60 twinbox run --network none -d --name limits -m 16m --pids-limit 10 --cpus 0.5 busybox sleep 60
id=$(container_id limits)
if [ "$code" != 0 ] || [ -z "$id" ]; then
    result cgroup-limit-files fail "run -d exit $code: $out"
else
    dir=$cg/$id
    memory_max=$(cat "$dir/memory.max" 2>&1)
    swap_max=$(cat "$dir/memory.swap.max" 2>&1)
    pids_max=$(cat "$dir/pids.max" 2>&1)
    cpu_max=$(cat "$dir/cpu.max" 2>&1)
    pid=$(cat "$dir/cgroup.procs" 2>&1 | head -n 1)
    files="memory.max=$memory_max memory.swap.max=$swap_max pids.max=$pids_max cpu.max=$cpu_max procs=$pid"
    run 60 twinbox rm -f limits
    if [ -d "$dir" ]; then
        result cgroup-limit-files fail "$dir still exists after rm -f (exit $code: $out); $files"
    elif [ "$memory_max" = 16777216 ] && [ "$swap_max" = 0 ] && [ "$pids_max" = 10 ] &&
        [ "$cpu_max" = "50000 100000" ] && [ -n "$pid" ]; then
        result cgroup-limit-files ok "$files; removed with the container ($(since "$t"))"
    else
        result cgroup-limit-files fail "$files"
    fi
fi

# A memory hog is OOM-killed at the limit and inspect says so.
t=$(now)
run 120 twinbox run --network none --name hog -m 16m busybox sh -c 'head -c 200m /dev/zero | tail > /dev/null'
hog_code=$code
hog_out=$out
id=$(container_id hog)
info=$(twinbox inspect hog 2>&1)
oom=$(echo "$info" | grep -o '"OOMKilled": *[a-z]*')
peak=$(echo "$info" | grep -o '"MemoryPeakBytes": *[0-9]*')
events=$(cat "$cg/$id/memory.events" 2>/dev/null | tr '\n' ' ')
run 60 twinbox rm hog
if [ "$hog_code" = 137 ] && echo "$oom" | grep -q true && [ -n "$id" ] && [ ! -d "$cg/$id" ]; then
    result cgroup-memory-oom ok "exit 137, $oom, $peak ($(since "$t"))"
else
    result cgroup-memory-oom fail "exit $hog_code ($hog_out), $oom, $peak, events: $events, cgroup left: $(ls "$cg" 2>&1)"
fi

# A fork loop is stopped by the pids limit; the same loop works without it.
t=$(now)
run 120 twinbox run --network none --rm --pids-limit 10 busybox sh -c 'for i in $(seq 1 40); do sleep 3 & done; wait'
limited_code=$code
limited_out=$out
run 120 twinbox run --network none --rm busybox sh -c 'for i in $(seq 1 40); do sleep 1 & done; wait'
if [ "$limited_code" != 0 ] && echo "$limited_out" | grep -q "can't fork" && [ "$code" = 0 ]; then
    result cgroup-pids-limit ok "limited: exit $limited_code, fork refused; unlimited: exit 0 ($(since "$t"))"
else
    result cgroup-pids-limit fail "limited: exit $limited_code ($(echo "$limited_out" | tail -n 3)); unlimited: exit $code ($out)"
fi

# Every container's cgroup is gone (the directory twinbox/ itself may stay).
left=$(find "$cg" -mindepth 1 -maxdepth 1 -type d 2>/dev/null)
if [ -z "$left" ]; then
    result cgroup-cleanup ok "no container cgroups left under $cg"
else
    result cgroup-cleanup fail "left behind: $left"
fi

# --- twinbox's VMM on the nested KVM ---------------------------------------------

if ! help=$(twinbox vm run --help 2>&1); then
    why="this twinbox has no 'vm run': $(echo "$help" | head -n 1)"
    for name in vm-uname vm-boot-id vm-cpus vm-exit-code vm-console vm-elf-pvh vm-detached vm-virtio-blk vm-rootfs-disk vm-debian-disk vm-vs-qemu lesson-tour-twinbox \
        lesson-shared-kernel lesson-scale lesson-desktop; do
        result "$name" skip "$why"
    done
else
    version=$(ls /boot | sed -n 's/^vmlinuz-//p' | head -n 1)

    t=$(now)
    run 180 twinbox vm run busybox uname -r
    if [ "$code" = 0 ] && echo "$out" | grep -qx "$version"; then
        result vm-uname ok "$version ($(since "$t"))"
    else
        result vm-uname fail "exit $code, want a line $version: $out"
    fi

    # Same kernel version as this machine, but its own boot: a VM, not a container.
    t=$(now)
    run 180 twinbox vm run busybox cat /proc/sys/kernel/random/boot_id
    mine=$(cat /proc/sys/kernel/random/boot_id)
    theirs=$(echo "$out" | grep -xE '[0-9a-f-]{36}' | head -n 1)
    if [ "$code" = 0 ] && [ -n "$theirs" ] && [ "$theirs" != "$mine" ]; then
        result vm-boot-id ok "guest $theirs, host $mine ($(since "$t"))"
    else
        result vm-boot-id fail "exit $code, host boot_id $mine: $out"
    fi

    t=$(now)
    run 180 twinbox vm run --name cpus --cpus 2 busybox grep -c ^processor /proc/cpuinfo
    if [ "$code" = 0 ] && echo "$out" | grep -qx 2; then
        result vm-cpus ok "2 processors in the guest ($(since "$t"))"
    else
        console=$(twinbox vm logs --console cpus 2>&1 | tail -n 15 | tr '\n' '|')
        result vm-cpus fail "exit $code, want a line 2: $out; console: $console"
    fi

    t=$(now)
    run 180 twinbox vm run busybox sh -c 'exit 3'
    if [ "$code" = 3 ]; then
        result vm-exit-code ok "exit 3 ($(since "$t"))"
    else
        result vm-exit-code fail "exit $code, want 3: $out"
    fi

    t=$(now)
    run 180 twinbox vm run --timings busybox echo hello-from-guest
    timings=$(echo "$out" | grep -E '^(setup \(initramfs, VM\)|kernel boot to init|start to workload) ' | sed 's/  */ /g' | tr '\n' ';')
    if [ "$code" = 0 ] && echo "$out" | grep -qx hello-from-guest && echo "$timings" | grep -q 'kernel boot to init [0-9]'; then
        result vm-console ok "hello-from-guest; $timings ($(since "$t"))"
    else
        result vm-console fail "exit $code, want a line hello-from-guest and timings: $out"
    fi

    # The same kernel as an ELF vmlinux, entered through its PVH note.
    t=$(now)
    elf=/opt/vmlinux-$version
    if [ -f "$elf" ]; then
        run 180 twinbox vm run --name elf --cpus 2 --kernel "$elf" busybox sh -c 'uname -r; grep -c ^processor /proc/cpuinfo'
        if [ "$code" = 0 ] && echo "$out" | grep -qx "$version" && echo "$out" | grep -qx 2; then
            result vm-elf-pvh ok "ELF vmlinux via PVH: $version, 2 cpus ($(since "$t"))"
        else
            console=$(twinbox vm logs --console elf 2>&1 | tail -n 15 | tr '\n' '|')
            result vm-elf-pvh fail "exit $code: $out; console: $console"
        fi
    else
        result vm-elf-pvh fail "no $elf: the harness could not extract it"
    fi

    # A detached VM: ps shows it, logs follow it, stop reaches the workload as
    # SIGTERM (its trap exits 0), rm removes it.
    t=$(now)
    run 60 twinbox vm run -d --name bg busybox sh -c 'trap "echo got-term; exit 0" TERM; echo started; while true; do sleep 1; done'
    started=no
    for _ in $(seq 1 180); do
        if twinbox vm logs bg 2>/dev/null | grep -q started; then
            started=yes
            break
        fi
        sleep 1
    done
    ps_out=$(twinbox vm ps 2>&1)
    run 60 twinbox vm stop -t 40 bg
    stop_code=$code
    state=$(twinbox vm inspect bg 2>&1 | tr -d ' \n' | grep -o '"status":"[a-z]*"\|"exit_code":[0-9a-z]*' | tr '\n' ' ')
    logs=$(twinbox vm logs bg 2>&1 | tr '\n' ' ')
    run 60 twinbox vm rm bg
    rm_code=$code
    left=$(twinbox vm ps -a 2>&1 | grep -w bg)
    if [ "$started" = yes ] && echo "$ps_out" | grep -q 'Running' && [ "$stop_code" = 0 ] &&
        echo "$state" | grep -q '"exit_code":0' && echo "$logs" | grep -q got-term &&
        [ "$rm_code" = 0 ] && [ -z "$left" ]; then
        result vm-detached ok "ps Running, logs '$logs', graceful stop: $state ($(since "$t"))"
    else
        result vm-detached fail "started=$started stop=$stop_code state=[$state] logs=[$logs] rm=$rm_code left=[$left] ps=[$ps_out]"
    fi

    # virtio-blk on the MMIO transport, found by the stock kernel through the
    # ACPI DSDT (LNRO0005) once the init loads virtio_mmio: a read-only disk
    # reads back byte for byte, a writable one keeps what the guest wrote.
    t=$(now)
    dd if=/dev/urandom of=/tmp/vm-ro.img bs=1M count=16 2>/dev/null
    rm -f /tmp/vm-rw.img
    truncate -s 1M /tmp/vm-rw.img
    want=$(md5sum </tmp/vm-ro.img | cut -d' ' -f1)
    run 240 twinbox vm run --name blk --disk /tmp/vm-ro.img:ro --disk /tmp/vm-rw.img busybox sh -c '
        echo tables $(ls /sys/firmware/acpi/tables | tr "\n" " ")
        echo serial=$(cat /sys/block/vda/serial) ro=$(cat /sys/block/vda/ro) sectors=$(cat /sys/block/vda/size)
        echo md5=$(md5sum </dev/vda | cut -d" " -f1)
        dd if=/dev/vda of=/dev/null bs=1M 2>&1 | tail -n 1
        printf written-by-guest | dd of=/dev/vdb bs=512 conv=sync 2>/dev/null && sync
        if echo x | dd of=/dev/vda conv=fsync 2>/dev/null; then echo ro-write-accepted; fi'
    written=$(head -c 16 /tmp/vm-rw.img)
    if [ "$code" = 0 ] && echo "$out" | grep -q "tables .*DSDT" &&
        echo "$out" | grep -qx "serial=twinbox-vda ro=1 sectors=32768" &&
        echo "$out" | grep -qx "md5=$want" && echo "$out" | grep -qx "16+0 records out" &&
        ! echo "$out" | grep -q ro-write-accepted && [ "$written" = written-by-guest ]; then
        result vm-virtio-blk ok "DSDT found, 16 MiB read by dd with md5 $want, write kept ($(since "$t"))"
    else
        console=$(twinbox vm logs --console blk 2>&1 | tail -n 15 | tr '\n' '|')
        result vm-virtio-blk fail "exit $code, want md5 $want, wrote [$written]: $out; console: $console"
    fi
    rm -f /tmp/vm-ro.img /tmp/vm-rw.img

    # The image as a shared read-only disk: the first VM builds it and writes
    # a file in its own layer, a second VM (its writable layer on a sparse
    # disk) boots from the cached disk and does not see that file.
    t=$(now)
    run 240 twinbox vm run --rm --rootfs disk --timings busybox sh -c 'echo mine >/etc/vm1-file && cat /etc/vm1-file && grep " / " /proc/mounts'
    first=$out
    first_code=$code
    # The second VM also writes a 32 MiB file to its own disk and deletes it:
    # mounted with discard, the blocks go back to the host (holes punched).
    run 240 twinbox vm run --name rw2 --rootfs disk --disk-size 64m --timings busybox sh -c 'ls /etc/vm1-file 2>&1; echo hostname=$(hostname)
        dd if=/dev/zero of=/big bs=1M count=32 conv=fsync 2>/dev/null && rm /big && sync && echo big=removed'
    disks=$(ls /var/lib/twinbox/cache/disks | wc -l)
    rw2=$(twinbox vm inspect rw2 2>/dev/null | sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' | head -n 1)
    allocated=$(du -k "/var/lib/twinbox/vms/$rw2/rw.ext4" 2>/dev/null | cut -f1)
    twinbox vm rm rw2 >/dev/null 2>&1
    if [ "$first_code" = 0 ] && [ "$code" = 0 ] && echo "$first" | grep -qx mine &&
        echo "$first" | grep -q "^overlay / overlay .*lowerdir=/twinbox/lower" &&
        echo "$first" | grep -q "^image disk .*(built in" && echo "$out" | grep -q "^image disk .*(cached)" &&
        echo "$out" | grep -q "vm1-file: No such file" && [ "$disks" = 1 ] &&
        echo "$out" | grep -qx big=removed && [ -n "$allocated" ] && [ "$allocated" -lt 16384 ]; then
        result vm-rootfs-disk ok "$(echo "$first" | grep '^image disk' | tr -s ' '); second VM from the cache does not see the first's file; its 64 MiB disk holds ${allocated} KiB after a 32 MiB file was deleted (discard) ($(since "$t"))"
    else
        result vm-rootfs-disk fail "first: exit $first_code: $first; second: exit $code: $out; disks: $disks; second's disk allocated: [$allocated] KiB"
    fi

    # A Debian image (carried in by the harness: the machine has no mirror)
    # boots from its own disk: Debian's userland on the image's file system
    # under the guest's kernel; `rmi` then takes the image's disk along.
    t=$(now)
    if ! twinbox image inspect debian:bookworm >/dev/null 2>&1; then
        result vm-debian-disk skip "no debian:bookworm in the nested machine: the harness carries one only where this host can bootstrap it (mmdebstrap and a Debian mirror)"
    else
        run 400 twinbox vm run --rm --rootfs disk --timings debian:bookworm sh -c '
            . /etc/os-release; echo "os=$ID-$VERSION_CODENAME"
            echo "dpkg=$(dpkg-query -W -f="\${Status}" dpkg)"
            echo "kernel=$(uname -r)"
            echo "root=$(grep -c "^overlay / overlay" /proc/mounts)"'
        debian_code=$code
        debian_out=$out
        disk_line=$(echo "$out" | grep '^image disk' | tr -s ' ')
        disks_before=$(ls /var/lib/twinbox/cache/disks | tr '\n' ' ')
        run 120 twinbox rmi debian:bookworm
        disks_after=$(ls /var/lib/twinbox/cache/disks | tr '\n' ' ')
        if [ "$code" = 0 ] && [ "$(echo $disks_before | wc -w)" = 2 ] && [ "$(echo $disks_after | wc -w)" = 1 ]; then
            rmi_ok=yes
        else
            rmi_ok="no (rmi exit $code: $out; disks before: $disks_before, after: $disks_after)"
        fi
        if [ "$debian_code" = 0 ] && echo "$debian_out" | grep -qx "os=debian-bookworm" &&
            echo "$debian_out" | grep -qx "dpkg=install ok installed" &&
            echo "$debian_out" | grep -qx "kernel=$version" && echo "$debian_out" | grep -qx "root=1" &&
            echo "$disk_line" | grep -q "(built in" && [ "$rmi_ok" = yes ]; then
            result vm-debian-disk ok "os=debian-bookworm, dpkg installed, kernel $version, overlay root; $disk_line; rmi removed its disk ($(since "$t"))"
        else
            console=$(echo "$debian_out" | tail -n 15 | tr '\n' '|')
            result vm-debian-disk fail "exit $debian_code: $console; rmi removed the disk: $rmi_ok"
        fi
    fi

    # The lesson tour with twinbox's own VMM as the VM half (on the CI host it
    # can only use QEMU): every lesson ran, none failed, and the facts hold.
    t=$(now)
    run 900 twinbox lesson tour --runs 1 --json --vm-backend twinbox
    tour_code=$code
    twinbox_vms=$(echo "$out" | grep -c '"name": *"twinbox"')
    no_failures=$(echo "$out" | grep -c '"failures": *\[\]')
    vm_own_boot=$(echo "$out" | grep -c '"vm_same_boot": *false')
    container_host_boot=$(echo "$out" | grep -c '"container_same_boot": *true')
    facts="vm backend twinbox in $twinbox_vms reports, $no_failures without failures, vm_same_boot=false: $vm_own_boot, container_same_boot=true: $container_host_boot"
    if [ "$tour_code" = 0 ] && [ "$twinbox_vms" -ge 5 ] && [ "$no_failures" -ge 5 ] &&
        [ "$vm_own_boot" -ge 1 ] && [ "$container_host_boot" -ge 1 ]; then
        result lesson-tour-twinbox ok "$facts ($(since "$t"))"
    else
        result lesson-tour-twinbox fail "exit $tour_code; $facts; $(echo "$out" | grep -v '^ *[]{}[]' | tail -n 8 | tr '\n' '|')"
    fi

    # Benchmark, not a pass/fail: time to workload start of twinbox's VMM and of
    # QEMU (-M microvm -accel kvm, the same kernel and initramfs), same nested run.
    ours=""
    theirs=""
    for _ in 1 2; do
        run 180 twinbox vm run --timings busybox true
        ours="$ours $(echo "$out" | sed -n 's/^VMM start to workload *\([0-9.]*\) ms/\1/p')"
        run 180 twinbox vm run --backend qemu --timings busybox true
        theirs="$theirs $(echo "$out" | sed -n 's/^VMM start to workload *\([0-9.]*\) ms/\1/p')"
    done
    machine=$(echo "$out" | grep -o 'QEMU ([^)]*)')
    if [ -n "$(echo $ours)" ] && [ -n "$(echo $theirs)" ]; then
        ratio=$(echo "$ours|$theirs" | awk -F'|' '{ n = split($1, a, " "); m = split($2, b, " ");
            sa = 0; for (i = 1; i <= n; i++) sa += a[i]; sb = 0; for (i = 1; i <= m; i++) sb += b[i];
            printf "twinbox %.0f ms, qemu %.0f ms (means), ratio %.2fx", sa / n, sb / m, (sa / n) / (sb / m) }')
        result vm-vs-qemu ok "VMM start to workload: $ratio; twinbox [$ours ] qemu [$theirs ] $machine"
    else
        result vm-vs-qemu fail "twinbox [$ours ] qemu [$theirs ]: $out"
    fi

    # Last: VM networking (it enables the CNI plugins, which would otherwise
    # put every VM above on the bridge by default).
    . /etc/nested/network-checks.sh

    # Then the lessons whose VM half the tour does not cover (they publish
    # ports: after the network checks, with the CNI plugins in place).
    if [ -x /usr/local/bin/cni-enable ]; then
        . /etc/nested/lesson-checks.sh
    else
        for name in shared-kernel scale desktop dockerfile network limits exercise; do
            result "lesson-$name" skip "no CNI plugins in the nested machine (see run.sh)"
        done
    fi
fi

echo "@@nested@@ done"
poweroff -f
