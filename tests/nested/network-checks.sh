# VM networking in the nested machine, sourced by guest-tests.sh (which
# defines result, run, now and since). Several checks on one busybox httpd VM:
#   vm-net-publish    its -p port answers over TCP from the nested host
#   vm-net-guest      a second VM has eth0's address, route, /etc/hosts and
#                     /etc/resolv.conf, and fetches over TCP both the first
#                     VM's page and a container's page by address
#   vm-net-container  a container pings the VM and fetches its page over TCP
#   vm-net-kill9      kill -9 of the VMM, then the next command: no tap, no
#                     veth, no address lease, no rule
# Debian 12's busybox wget segfaults whenever -T is given: every fetch here is
# bounded with timeout(1) instead.
if [ ! -x /usr/local/bin/cni-enable ]; then
    for name in vm-net-publish vm-net-guest vm-net-container vm-net-kill9; do
        result "$name" skip "no CNI plugins in the nested machine (see run.sh)"
    done
    return 0 2>/dev/null || exit 0
fi
cni-enable

t=$(now)
veths_before=$(ls /sys/class/net | grep -c '^veth')
run 120 twinbox vm run -d --name web -p 8080:80 busybox sh -c \
    'mkdir -p /www && echo hello-from-the-vm >/www/index.html && exec httpd -f -p 80 -h /www'
web_code=$code
web_out=$out
addr=$(twinbox vm inspect web 2>/dev/null | sed -n 's/.*"address": *"\([0-9.]*\)".*/\1/p' | head -n 1)
page=""
waited=0
while [ "$web_code" = 0 ] && [ "$waited" -lt 300 ]; do
    page=$(timeout 10 wget -q -O - http://127.0.0.1:8080/ 2>/dev/null)
    [ -n "$page" ] && break
    sleep 3
    waited=$((waited + 3))
done
if [ "$page" = hello-from-the-vm ]; then
    result vm-net-publish ok "VM at $addr, 127.0.0.1:8080 -> :80 answered after ${waited}s ($(since "$t"))"
else
    console=$(twinbox vm logs --console web 2>&1 | tail -n 12 | tr '\n' '|')
    result vm-net-publish fail "run: exit $web_code: $web_out; address [$addr]; page [$page]; ps: $(twinbox vm ps -a 2>&1 | tail -n 2); console: $console"
fi

t=$(now)
run 60 twinbox run -d --name box busybox sh -c \
    'mkdir -p /www && echo hello-from-the-container >/www/index.html && exec httpd -f -p 80 -h /www'
box=$(twinbox inspect box 2>/dev/null | sed -n 's/.*"IPAddress": *"\([0-9.]*\)".*/\1/p' | head -n 1)
run 300 twinbox vm run --rm --name peer busybox sh -c \
    "ip -o -4 addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf; hostname;
     timeout 20 wget -q -O - http://$addr/; timeout 20 wget -q -O - http://$box/"
peer_ip=$(echo "$out" | sed -n 's/.*inet \([0-9.]*\/[0-9]*\).*/\1/p' | head -n 1)
if [ "$code" = 0 ] && [ -n "$peer_ip" ] && echo "$out" | grep -q '^default via' &&
    echo "$out" | grep -q "^${peer_ip%/*}[[:space:]]*peer\$" && echo "$out" | grep -q '^nameserver' &&
    echo "$out" | grep -qx hello-from-the-vm && echo "$out" | grep -qx hello-from-the-container; then
    result vm-net-guest ok "eth0 $peer_ip, $(echo "$out" | grep '^default via' | head -n 1), hosts and resolv.conf written, fetched the other VM's page and container $box's page ($(since "$t"))"
else
    result vm-net-guest fail "exit $code; container at [$box]: $out"
fi
twinbox rm -f box >/dev/null 2>&1

t=$(now)
run 120 twinbox run --rm busybox sh -c "ping -c 2 -W 5 $addr && timeout 20 wget -q -O - http://$addr/"
if [ "$code" = 0 ] && echo "$out" | grep -q ' 0% packet loss' && echo "$out" | grep -qx hello-from-the-vm; then
    result vm-net-container ok "a container pinged the VM at $addr and fetched its page ($(since "$t"))"
else
    result vm-net-container fail "exit $code: $out"
fi

t=$(now)
pid=$(twinbox vm inspect web 2>/dev/null | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' | head -n 1)
id=$(twinbox vm inspect web 2>/dev/null | sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' | head -n 1)
[ -n "$pid" ] && kill -9 "$pid"
sleep 1
taps=$(nsenter --net="/var/lib/twinbox/vms/$id/netns" ip -o link 2>/dev/null | grep -c tap0)
twinbox vm ps -a >/dev/null 2>&1
veths_after=$(ls /sys/class/net | grep -c '^veth')
rules=$(iptables -t nat -S 2>/dev/null | grep -c -e 8080 -e "$addr")
lease=$(ls /run/twinbox/ipam/bridge 2>/dev/null | grep -cx "$addr")
netns_left=$(ls "/var/lib/twinbox/vms/$id/netns" 2>/dev/null | wc -l)
facts="taps after kill $taps, veths $veths_before -> $veths_after, nat rules $rules, lease $lease, netns $netns_left"
if [ -n "$pid" ] && [ "$taps" = 0 ] && [ "$veths_after" = "$veths_before" ] && [ "$rules" = 0 ] &&
    [ "$lease" = 0 ] && [ "$netns_left" = 0 ]; then
    result vm-net-kill9 ok "$facts ($(since "$t"))"
else
    result vm-net-kill9 fail "pid [$pid]; $facts"
fi
twinbox vm rm -f web >/dev/null 2>&1
