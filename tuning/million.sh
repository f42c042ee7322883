#!/usr/bin/env bash
# A million idle clients on one broker: checks the host, starts the broker, connects the clients
# from several loadgen processes, holds them while each process's probe pair publishes, and reports
# broker RSS per client, connect rate, keep-alive timeouts and the probes' p99.
#
#   tuning/million.sh [options] [SHARDMQ_BIN]
#
# Options:
#   --clients N      idle clients (default 1000000)
#   --largest        lower --clients to the most this host's limits allow instead of stopping
#   --hold D         how long the clients are held once connected (default 120s)
#   --keepalive S    the clients' keep-alive (default 60)
#   --shards N       broker shards (default: the broker's default, one per CPU)
#   --procs P        loadgen processes (default: enough for the descriptor limit, at least 2)
#   --per-addr K     connections per source address (default 50000: under the port range)
#   --port P         broker port (default 28830)
#   --loadgen PATH   loadgen binary (default: next to SHARDMQ_BIN, else target/release)
#   --mosquitto BIN  afterwards, the same run against this Mosquitto (its own port, P+1)
#   --out DIR        results and logs (default: a new temporary directory)
#
# What the host needs (checked first; each shortfall is printed with the command that fixes it):
#   - descriptors: the broker holds one per client, each loadgen process one per client it opens
#     (hard RLIMIT_NOFILE, which both raise their soft limit to; fs.nr_open caps it):
#       ulimit -n 1048576   (or LimitNOFILE= / limits.conf)   sysctl -w fs.nr_open=1100000
#   - source addresses: a loopback 4-tuple per client; each process connects from its own range of
#     127.x.y.z addresses, K clients per address (ip_local_port_range must offer more than K ports):
#       sysctl -w net.ipv4.ip_local_port_range="1024 65535"
#   - connection tracking, when loaded: one entry per connection:
#       sysctl -w net.netfilter.nf_conntrack_max=2097152
#   - accept backlog for the connect storm: sysctl -w net.core.somaxconn=4096
#   - memory: about 8 KB per client in all (broker, loadgen, both sockets' kernel memory).
#
# The script kills only the processes it started, by PID. Exit status: 0 when every client connected
# and none was closed for keep-alive, 1 otherwise, 2 when the host cannot run the count asked.

set -euo pipefail

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; }

CLIENTS=1000000
LARGEST=0
HOLD=120s
KEEPALIVE=60
SHARDS=""
PROCS=""
PER_ADDR=50000
PORT=28830
LOADGEN=""
MOSQUITTO=""
OUT=""
BIN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --clients) CLIENTS=$2; shift ;;
        --largest) LARGEST=1 ;;
        --hold) HOLD=$2; shift ;;
        --keepalive) KEEPALIVE=$2; shift ;;
        --shards) SHARDS=$2; shift ;;
        --procs) PROCS=$2; shift ;;
        --per-addr) PER_ADDR=$2; shift ;;
        --port) PORT=$2; shift ;;
        --loadgen) LOADGEN=$2; shift ;;
        --mosquitto) MOSQUITTO=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
        *) BIN=$1 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/shardmq}
LOADGEN=${LOADGEN:-$(dirname "$BIN")/shardmq-loadgen}
for b in "$BIN" "$LOADGEN"; do
    [ -x "$b" ] || { echo "million: $b not found (cargo build --release -p shardmq -p shardmq-loadgen)" >&2; exit 2; }
done
OUT=${OUT:-$(mktemp -d /tmp/shardmq-million.XXXXXX)}
mkdir -p "$OUT"

say() { echo "million: $*"; }
sysctl_value() { cat "/proc/sys/$(echo "$1" | tr . /)" 2>/dev/null || echo ""; }

# --- the host's limits -----------------------------------------------------------------------------
# Everything started here (loadgen, Mosquitto, which does not raise it itself) gets the hard limit.
ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=$(sysctl_value fs.nr_open)
nr_open=$(sysctl_value fs.nr_open)
read -r port_lo port_hi <<<"$(sysctl_value net.ipv4.ip_local_port_range)"
ports=$((port_hi - port_lo + 1))
conntrack=$(sysctl_value net.netfilter.nf_conntrack_max)
somaxconn=$(sysctl_value net.core.somaxconn)
mem_kb=$(awk '/MemAvailable/{print $2}' /proc/meminfo)

fits=$CLIENTS
short=()
# Descriptors: the broker keeps ~100 for itself (listeners, epoll, rings, logs, journal).
if [ $((nofile - 100)) -lt "$fits" ]; then
    fits=$((nofile - 100))
    short+=("RLIMIT_NOFILE hard limit $nofile: ulimit -n $((CLIENTS + 1000)) (and sysctl -w fs.nr_open=$((CLIENTS + 1000)) if fs.nr_open=$nr_open is lower)")
fi
if [ "$PER_ADDR" -ge "$ports" ]; then
    PER_ADDR=$((ports * 9 / 10))
    short+=("ip_local_port_range offers $ports ports: $PER_ADDR clients per source address (sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\")")
fi
if [ -n "$conntrack" ] && [ "$conntrack" -lt $((CLIENTS + CLIENTS / 10)) ]; then
    [ $((conntrack * 9 / 10)) -lt "$fits" ] && fits=$((conntrack * 9 / 10))
    short+=("nf_conntrack_max $conntrack: sysctl -w net.netfilter.nf_conntrack_max=$((CLIENTS * 2))")
fi
if [ $((mem_kb / 8)) -lt "$fits" ]; then
    fits=$((mem_kb / 8))
    short+=("MemAvailable $((mem_kb / 1024)) MiB: about 8 KB per client in all")
fi
if [ -n "$somaxconn" ] && [ "$somaxconn" -lt 1024 ]; then
    short+=("somaxconn $somaxconn: sysctl -w net.core.somaxconn=4096 (the connect storm overflows the accept queue)")
fi
for s in "${short[@]}"; do say "host: $s"; done
if [ "$fits" -lt "$CLIENTS" ]; then
    if [ "$LARGEST" = 1 ]; then
        say "this host allows $fits clients, not $CLIENTS: running with $fits (--largest)"
        CLIENTS=$fits
    else
        say "this host allows $fits clients, not $CLIENTS: raise the limits above, or run with --largest"
        exit 2
    fi
fi

# Loadgen processes: each opens at most its descriptor limit (less a margin), at least two so the
# clients' side is not one process's event loops.
per_proc_max=$((nofile - 200))
if [ -z "$PROCS" ]; then
    PROCS=$(((CLIENTS + per_proc_max - 1) / per_proc_max))
    [ "$PROCS" -lt 2 ] && PROCS=2
fi
per_proc=$(((CLIENTS + PROCS - 1) / PROCS))
[ "$per_proc" -gt "$per_proc_max" ] && { say "$PROCS loadgen processes cannot open $CLIENTS clients: --procs $(((CLIENTS + per_proc_max - 1) / per_proc_max))"; exit 2; }
addrs_per_proc=$(((per_proc + PER_ADDR - 1) / PER_ADDR))
say "$CLIENTS clients from $PROCS loadgen processes ($per_proc each, $addrs_per_proc source addresses each), held $HOLD, keep-alive $KEEPALIVE s"

# Seconds in a duration like 120s, 2m, 500ms.
seconds() {
    case "$1" in
        *ms) echo $(( ${1%ms} / 1000 )) ;;
        *s) echo "${1%s}" ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *) echo "$1" ;;
    esac
}
hold_s=$(seconds "$HOLD")
# Setup at a pessimistic 2,000 connects per second per process, and never less than a minute.
setup_s=$((per_proc / 2000 + 60))

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# run NAME PORT CMD...: one broker, the clients, the report line.
run() {
    local name=$1 port=$2; shift 2
    "$@" >"$OUT/$name.log" 2>&1 &
    local broker=$!
    pids+=("$broker")
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    local rss0
    rss0=$(rss_kb "$broker")
    local lg=() p first second
    for p in $(seq 0 $((PROCS - 1))); do
        # Process p connects from 127.(p+1).x.y: its own addresses, none shared with another process.
        first="127.$((p + 1)).0.1"
        second=$((addrs_per_proc))
        local n=$per_proc
        [ "$p" = $((PROCS - 1)) ] && n=$((CLIENTS - per_proc * (PROCS - 1)))
        "$LOADGEN" conn --port "$port" --connections "$n" --keepalive "$KEEPALIVE" \
            --duration "$HOLD" --warmup 2s --setup-timeout "${setup_s}s" --connect-timeout 60s \
            --source-addrs "$first-127.$((p + 1)).$(((second - 1) / 254)).$(((second - 1) % 254 + 1))" \
            --client-id-prefix "m$p-" --json -q >"$OUT/$name.loadgen$p.json" 2>"$OUT/$name.loadgen$p.err" &
        lg+=($!)
        pids+=($!)
    done
    local peak=0 r waited=0 limit=$((setup_s + hold_s + 120)) last=0 held=0
    while kill -0 "${lg[@]}" 2>/dev/null && [ "$waited" -lt "$limit" ]; do
        r=$(rss_kb "$broker")
        [ "$r" -gt "$peak" ] && peak=$r
        # The sample before the last: the clients still all held (the last may see them leave).
        held=$last
        last=$r
        sleep 2
        waited=$((waited + 2))
    done
    local status=0
    for p in "${lg[@]}"; do wait "$p" || status=1; done
    local timeouts
    timeouts=$(grep -c "has exceeded timeout" "$OUT/$name.log" || true)
    kill "$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
    python3 - "$name" "$CLIENTS" "$rss0" "$peak" "$held" "$timeouts" "$OUT/$name".loadgen*.json <<'EOF'
import json, sys
name, clients, rss0, peak, held, timeouts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
results = []
for f in sys.argv[7:]:
    try:
        results.append(json.loads(open(f).read().strip().splitlines()[-1]))
    except Exception as e:
        print(f"million: {name}: no result in {f} ({e})")
for r in results:
    if "error" in r:
        print(f"million: {name}: a loadgen process failed: {r['error']}")
connected = sum(r.get("idle_connections", 0) for r in results)
errors = sum(r.get("connection_errors", 0) for r in results)
setup_ms = max((r["connect"]["total_ms"] for r in results if "connect" in r), default=0)
rate = connected / (setup_ms / 1000) if setup_ms else 0
p99 = max((r.get("p99_us", 0) for r in results), default=0)
lost = sum(r.get("lost", 0) for r in results)
per_client = (peak - rss0) * 1024 / clients if clients else 0
held_per_client = (held - rss0) * 1024 / clients if clients else 0
print(f"million: {name}: {connected} of {clients} clients connected, {errors} connection errors; "
      f"connect rate {rate:,.0f}/s ({setup_ms/1000:.1f} s); broker RSS {rss0/1024:.1f} MB before, "
      f"{peak/1024:.1f} MB peak: {per_client:,.0f} B per client, {held/1024:.1f} MB held (end of the hold): "
      f"{held_per_client:,.0f} B per client; keep-alive timeouts {timeouts}; "
      f"probe p99 {p99/1000:.2f} ms (max of {len(results)} probes), lost {lost}")
ok = connected == clients and errors == 0 and timeouts == 0 and lost == 0
sys.exit(0 if ok else 1)
EOF
}

conf="$OUT/shardmq.conf"
{
    echo "listener $PORT 127.0.0.1"
    echo "allow_anonymous true"
    echo "max_connections -1"
    echo "connection_messages false"
    [ -n "$SHARDS" ] && echo "shards $SHARDS"
} >"$conf"
rc=0
run shardmq "$PORT" "$BIN" -c "$conf" || rc=1
if [ -n "$MOSQUITTO" ]; then
    mconf="$OUT/mosquitto.conf"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\nconnection_messages false\n' \
        $((PORT + 1)) >"$mconf"
    run mosquitto $((PORT + 1)) "$MOSQUITTO" -c "$mconf" || rc=1
fi
say "results and logs in $OUT"
exit $rc
