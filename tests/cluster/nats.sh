#!/usr/bin/env bash
# A 3-server NATS cluster with JetStream on loopback, for the cluster tests and benchmarks
# (docs/CLUSTER.md). Uses Debian's nats-server (apt-get install -y nats-server).
#
#   tests/cluster/nats.sh start DIR   start three servers under DIR, wait until JetStream has a
#                                     meta leader; print the client URLs, comma-separated, and write
#                                     them to DIR/urls
#   tests/cluster/nats.sh stop DIR    stop the servers started under DIR (by the PIDs it recorded)
#   tests/cluster/nats.sh kill DIR N  kill -9 server N (1-3), for failure tests
#   tests/cluster/nats.sh restart DIR N...  start servers N... again with their configuration and
#                                     store, then wait until each is ready
#
# Ports are picked free at start (loopback only). Each server keeps its JetStream store in DIR/nN.

set -euo pipefail
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
NATS=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}

free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

start_one() { # DIR N
    local dir=$1 n=$2
    "$NATS" -c "$dir/n$n.conf" > "$dir/n$n.log" 2>&1 &
    echo $! > "$dir/n$n.pid"
}

wait_ready() { # DIR N: healthz answers ok once the server's JetStream is current (up to 90 s: a server
    # killed with -9 catches its streams up first, slow on a busy 2-core machine)
    local dir=$1 n=$2 http i
    http=$(cat "$dir/n$n.http")
    for i in $(seq 1 900); do
        if python3 - "$http" <<'PY' 2>/dev/null
import json, sys, urllib.request
r = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
sys.exit(0 if json.load(r).get("status") == "ok" else 1)
PY
        then return 0; fi
        kill -0 "$(cat "$dir/n$n.pid")" 2>/dev/null || { echo "nats.sh: server $n exited:" >&2; tail -5 "$dir/n$n.log" >&2; return 1; }
        sleep 0.1
    done
    echo "nats.sh: server $n not ready after 90 s:" >&2; tail -5 "$dir/n$n.log" >&2; return 1
}

case "${1:-}" in
    start)
        dir=${2:?DIR}; mkdir -p "$dir"
        read -r c1 c2 c3 r1 r2 r3 h1 h2 h3 <<<"$(free_ports 9)"
        clients=("$c1" "$c2" "$c3"); routes=("$r1" "$r2" "$r3"); https=("$h1" "$h2" "$h3")
        for n in 1 2 3; do
            i=$((n - 1))
            cat > "$dir/n$n.conf" <<CONF
server_name: n$n
listen: 127.0.0.1:${clients[$i]}
http: 127.0.0.1:${https[$i]}
jetstream { store_dir: "$dir/n$n" }
cluster {
  name: shardmq-test
  listen: 127.0.0.1:${routes[$i]}
  routes: [nats-route://127.0.0.1:$r1, nats-route://127.0.0.1:$r2, nats-route://127.0.0.1:$r3]
}
CONF
            echo "${https[$i]}" > "$dir/n$n.http"
            start_one "$dir" "$n"
        done
        for n in 1 2 3; do wait_ready "$dir" "$n"; done
        echo "nats://127.0.0.1:$c1,nats://127.0.0.1:$c2,nats://127.0.0.1:$c3" | tee "$dir/urls"
        ;;
    stop)
        dir=${2:?DIR}
        for n in 1 2 3; do
            [ -f "$dir/n$n.pid" ] || continue
            pid=$(cat "$dir/n$n.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$dir/n$n.pid"
        done
        ;;
    kill)
        dir=${2:?DIR}; n=${3:?N}
        kill -9 "$(cat "$dir/n$n.pid")"
        rm -f "$dir/n$n.pid"
        ;;
    restart)
        # Start them all before waiting: a server is ready only once JetStream has a quorum.
        dir=${2:?DIR}; shift 2; [ $# -gt 0 ] || { usage >&2; exit 2; }
        for n in "$@"; do start_one "$dir" "$n"; done
        for n in "$@"; do wait_ready "$dir" "$n"; done
        ;;
    -h|--help) usage ;;
    *) usage >&2; exit 2 ;;
esac
