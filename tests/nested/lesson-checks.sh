# The lessons whose VM half is not in the tour, with twinbox's own VMM as that
# half (on the CI host only QEMU can boot a stock kernel), sourced by
# guest-tests.sh after the network checks (which put the CNI plugins in
# place: these lessons publish ports). Each runs with `--runs 1 --json
# --vm-backend twinbox`; its JSON goes to the console on one line,
#
#     @@nested-json@@ lesson-<name> <the JSON>
#
# for tests/nested.rs to check what the lesson teaches, and a result line says
# whether it ran (exit 0, the VM backend twinbox's VMM).
#   lesson-shared-kernel lesson-scale lesson-desktop lesson-dockerfile
#   lesson-network lesson-limits lesson-exercise
# The network and exercise lessons find their base images (iperf3,
# postgres-base) loaded from archives run.sh made on the host. The tour's
# lessons run in lesson-tour-twinbox.
# Needs result, now and since (guest-tests.sh).

# lesson_check NAME SECONDS [ARGS...]
lesson_check() {
    name=$1
    limit=$2
    shift 2
    t=$(now)
    json=$(timeout -s KILL "$limit" twinbox lesson "$name" --runs 1 --json --vm-backend twinbox "$@" \
        2>/tmp/lesson-$name.err)
    code=$?
    # pretty JSON has no raw newline inside a string: dropping the indentation
    # and the line ends loses nothing
    echo "@@nested-json@@ lesson-$name $(printf '%s\n' "$json" | sed 's/^ *//' | tr -d '\n')"
    backend=$(printf '%s\n' "$json" | grep -A4 '"vm_backend": {' | sed -n 's/.*"name": *"\([^"]*\)".*/\1/p' | head -n 1)
    failures=$(printf '%s\n' "$json" | grep -c '"failures": \[\]')
    if [ "$code" = 0 ] && [ "$backend" = twinbox ] && [ "$failures" = 1 ]; then
        result "lesson-$name" ok "exit 0, VM backend $backend ($(since "$t"))"
    else
        result "lesson-$name" fail "exit $code, VM backend [$backend], failures: $(printf '%s\n' "$json" | sed -n '/"failures": \[/,/\]/p' | tr -d '\n' | cut -c1-300); stderr: $(tail -n "${lesson_err_lines:-6}" /tmp/lesson-$name.err | tr '\n' '|') ($(since "$t"))"
    fi
    rm -f /tmp/lesson-$name.err
}

lesson_check shared-kernel 600
# a few containers and two VMs: the curves, not the hundreds
lesson_check scale 900 --count 8 --vm-budget 512m
lesson_check desktop 900
# the course's app built, then served by a container and by a VM on the bridge
lesson_check dockerfile 900
# veth and virtio-net on one bridge, seen from inside and timed from the host
lesson_check network 900
# a memory limit, a pids limit and a CPU quota in containers (the CPU loop
# sized from this machine's own speed), the VM's RAM as its limit
lesson_check limits 600
# the course's database: initdb, a query from the host, the data kept in a
# volume for a second container, then the same image as a VM
lesson_check exercise 1200
