#!/usr/bin/env bash
# Cluster figures for docs/PERFORMANCE.md (issue 19), on one machine, as ratios:
#   1. the cost of cluster mode when all traffic is local: one broker without cluster keys against
#      one cluster node (two more nodes running, no remote interest), loadgen --compare alternating;
#   2. cross-node against same-node: 9 publisher->subscriber pairs all on node 1, then each pair's
#      publisher and subscriber on different nodes (loadgen spreads clients round robin);
#   3. 1 -> 3 nodes: 12 pairs on one node, then spread over three (each pair on one node);
#   4. mixed levels: 2b at QoS 1 while QoS 0 fan-in traffic crosses between the same nodes (the
#      cost of keeping order across the two paths, src/cluster/order.rs).
# QoS from --qos (0 or 1). Starts tests/cluster/nats.sh and the brokers itself, stops them (by PID).
#
#   tests/cluster/bench.sh [--qos N] [--measure 10s] [--shards N] SHARDMQ LOADGEN
set -euo pipefail
qos=0 measure=10s shards=1
while [ $# -gt 2 ]; do
    case "$1" in
        --qos) qos=$2; shift 2 ;;
        --measure) measure=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        *) echo "usage: $0 [--qos N] [--measure 10s] [--shards N] SHARDMQ LOADGEN" >&2; exit 2 ;;
    esac
done
broker=$(realpath "$1") loadgen=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/shardmq-cluster-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    bash "$here/nats.sh" stop "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
bash "$here/nats.sh" start "$dir" > /dev/null
urls=$(cat "$dir/urls")
read -r p0 p1 p2 p3 <<<"$(python3 -c '
import socket
s=[socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1",0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"
start() { # PORT [NODE]
    local conf="$dir/b$1.conf"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nshards %s\nmax_queued_messages 0\n' "$1" "$shards" > "$conf"
    if [ -n "${2:-}" ]; then
        printf 'cluster_nats %s\ncluster_name bench\ncluster_node %s\n' "$urls" "$2" >> "$conf"
    fi
    "$broker" -c "$conf" > "$dir/b$1.log" 2>&1 &
    pids+=($!)
}
start "$p0"
start "$p1" n1
start "$p2" n2
start "$p3" n3
for p in "$p0" "$p1" "$p2" "$p3"; do
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
        sleep 0.1
    done
done
lg() { "$loadgen" p2p --qos "$qos" --duration "$measure" --warmup 2s -q "$@"; }
echo "== 1. cluster mode, all traffic local: single broker (A) vs cluster node n1 (B), QoS $qos"
lg --pairs 10 --port "$p0" --compare "127.0.0.1:$p1" --rounds 3
echo "== 2a. same node: 9 pairs on n1, QoS $qos"
lg --pairs 9 --port "$p1"
echo "== 2b. cross-node: 9 pairs, each publisher on one node and its subscriber on the other, QoS $qos"
lg --pairs 9 --port "$p1,$p2"
echo "== 3a. one node: 12 pairs on n1, QoS $qos"
lg --pairs 12 --port "$p1"
echo "== 3b. three nodes: 12 pairs spread over n1, n2, n3 (each pair on one node), QoS $qos"
lg --pairs 12 --port "$p1,$p2,$p3"
echo "== 4. mixed levels: 2b at QoS 1 while 8 QoS 0 publishers (fan-in, rate 5000/s each) cross too"
"$loadgen" fanin --qos 0 --pubs 8 --subs 1 --rate 5000 --port "$p1,$p2" --duration "$measure" \
    --warmup 2s -q --client-id-prefix lgmix > "$dir/mixed-qos0.txt" 2>&1 &
mixed=$!
"$loadgen" p2p --qos 1 --pairs 9 --port "$p1,$p2" --duration "$measure" --warmup 2s -q
wait "$mixed" || true
echo "-- its QoS 0 fan-in:"
cat "$dir/mixed-qos0.txt"
for p in "$p1" "$p2" "$p3"; do
    grep -h "Cluster: " "$dir/b$p.log" | tail -1 || true
done
