#!/bin/bash
# Restart gap of the whole daemon (issue #14): two namespace hosts, overlayd (built JS: run
# `npm run build` first) on each, pings every 10 ms from a to b; overlayd on a (every process of it:
# the supervisor and its packet processes) is SIGKILLed and
# started again at once, 3 times. Prints per repetition when the new overlayd forwarded (ms after
# its process started), the longest gap between ping answers and the pings lost.
# Usage (root): flock /work/netns.lock bench/restart-gap.sh vxlan|udp  (OVERLAYD_ARGS=--no-supervisor: one process)
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=${1:-vxlan}; A=odgap$$-a; B=odgap$$-b; D=$(mktemp -d)
cleanup() { for n in $A $B; do for p in $(ip netns pids $n 2>/dev/null); do kill -9 $p 2>/dev/null || true; done; ip netns del $n 2>/dev/null || true; done; }
trap 'cleanup; rm -rf $D' EXIT
cleanup
ip netns add $A; ip netns add $B
ip -n $A link set lo up; ip -n $B link set lo up
ip link add eth0 netns $A type veth peer name eth0 netns $B
ip -n $A addr add 198.18.0.1/24 dev eth0; ip -n $B addr add 198.18.0.2/24 dev eth0
ip -n $A link set eth0 up; ip -n $B link set eth0 up
for i in 1 2; do ns=$([ $i = 1 ] && echo $A || echo $B); ip -n $ns link add cni0 type bridge; ip -n $ns addr add 198.19.$i.1/24 dev cni0; ip -n $ns link set cni0 up; done
echo "{\"Network\":\"198.19.0.0/16\",\"Backend\":{\"Type\":\"$T\"}}" > $D/net.json
if [ $T = vxlan ]; then BD1=',"BackendData":{"VNI":1,"VtepMAC":"0a:58:c6:13:01:00"}'; BD2=',"BackendData":{"VNI":1,"VtepMAC":"0a:58:c6:13:02:00"}'; fi
echo "{\"198.19.1.0-24\":{\"PublicIP\":\"198.18.0.1\",\"BackendType\":\"$T\"$BD1},\"198.19.2.0-24\":{\"PublicIP\":\"198.18.0.2\",\"BackendType\":\"$T\"$BD2}}" > $D/peers.json
run() { ns=$1; s=$2; ip netns exec $ns node $ROOT/dist/overlayd/main.js --net-conf $D/net.json --subnet $s --iface eth0 --peers $D/peers.json --subnet-file $D/$ns.env $OVERLAYD_ARGS; }
run $B 198.19.2.0/24 > $D/b.log 2>&1 &
run $A 198.19.1.0/24 > $D/a.log 2>&1 &
sleep 2
for rep in 1 2 3; do
  ip netns exec $A ping -n -D -i 0.01 -W 1 -c 300 -I 198.19.1.1 198.19.2.1 > $D/ping.txt &
  PP=$!
  sleep 1
  # the whole daemon: the supervisor and its packet processes (active and standby)
  P=$(ip netns pids $A | while read p; do if grep -q overlayd /proc/$p/cmdline 2>/dev/null; then echo $p; fi; done)
  t0=$(date +%s%N); kill -9 $P
  # dead = gone or a zombie (its descriptors are closed; PID 1 here reaps orphans late)
  for p in $P; do while kill -0 $p 2>/dev/null && [ "$(cut -d" " -f3 /proc/$p/stat 2>/dev/null)" != Z ]; do sleep 0.001; done; done
  run $A 198.19.1.0/24 > $D/a$rep.log 2>&1 &
  until grep -q running $D/a$rep.log; do sleep 0.005; done
  t1=$(date +%s%N)
  wait $PP || true
  gap=$(grep -o '^\[[0-9.]*\]' $D/ping.txt | tr -d '[]' | awk 'NR>1{d=($1-p)*1000; if(d>m)m=d} {p=$1} END{printf "%.0f", m}')
  lost=$((300 - $(grep -c 'bytes from' $D/ping.txt)))
  st=$(grep -o "forwarding [0-9]* ms" $D/a$rep.log)
  [ -n "$VERBOSE" ] && cat $D/a$rep.log
  echo "$T rep $rep: $st; gap ${gap} ms, lost $lost/300, kill->running $(( (t1-t0)/1000000 )) ms; $(grep -c adopting $D/a$rep.log) adopt line"
  sleep 0.5
done
