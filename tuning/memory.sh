#!/usr/bin/env bash
# Broker memory per retained message and per subscription (issue 18), shardmq and Mosquitto the
# same way: start the broker, let raw MQTT clients (tuning/memory_clients.py, no client library)
# store retained messages or make subscriptions, and report the broker's RSS growth per item.
#
#   tuning/memory.sh retained      [--count 50000] [--size 1024] [--shards N] [--port P] BROKER
#   tuning/memory.sh subscriptions [--clients 1000] [--filters 1000] [--shards N] [--port P] BROKER
#
# BROKER: a shardmq binary, or a path ending in "mosquitto" (run with the same listener settings).
# retained: one client publishes COUNT retained QoS 1 messages of SIZE bytes; growth = RSS once all
# are acknowledged minus RSS at start. subscriptions: CLIENTS clients connect, then each subscribes
# to FILTERS distinct filters; growth = RSS once every SUBACK came minus RSS once all connected.
# RSS is /proc/PID/status VmRSS, read one second after each step. The script kills only the broker
# it started, by PID.

set -euo pipefail
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

MODE=${1:-}; shift || true
COUNT=50000; SIZE=1024; CLIENTS=1000; FILTERS=1000; SHARDS=2; PORT=28870; BROKER=""
while [ $# -gt 0 ]; do
    case "$1" in
        --count) COUNT=$2; shift ;;
        --size) SIZE=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --filters) FILTERS=$2; shift ;;
        --shards) SHARDS=$2; shift ;;
        --port) PORT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) BROKER=$1 ;;
    esac
    shift
done
case "$MODE" in retained|subscriptions) ;; *) usage; exit 2 ;; esac
[ -n "$BROKER" ] || { usage; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
if [ "$MODE" = subscriptions ]; then
    # The broker and the clients' process each hold one per client, the broker also a few per shard.
    need=$((CLIENTS + 16 * SHARDS + 64))
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
        echo "memory.sh: $CLIENTS clients need $need descriptors, the hard limit is $hard" >&2
        exit 2
    fi
    ulimit -n "$hard"
fi

CONF=$(mktemp)
trap 'rm -f "$CONF"; [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true' EXIT
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\n' "$PORT" > "$CONF"
case "$BROKER" in
    *mosquitto) ;;
    *) echo "shards $SHARDS" >> "$CONF" ;;
esac
"$BROKER" -c "$CONF" > /dev/null 2>&1 &
PID=$!
rss() { awk '/VmRSS/{print $2}' "/proc/$PID/status"; }
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
coproc CLIENTS_PROC {
    if [ "$MODE" = retained ]; then
        python3 "$HERE/memory_clients.py" retained "$PORT" "$COUNT" "$SIZE"
    else
        python3 "$HERE/memory_clients.py" subscriptions "$PORT" "$CLIENTS" "$FILTERS"
    fi
}
name=$(basename "$BROKER")
[ "$name" = mosquitto ] || name="$name ($SHARDS shards)"
if [ "$MODE" = retained ]; then
    before=$(rss)
    read -r _ <&"${CLIENTS_PROC[0]}"
    sleep 1
    after=$(rss)
    items=$COUNT
    what="retained message ($COUNT x $SIZE B)"
else
    read -r _ <&"${CLIENTS_PROC[0]}"
    sleep 1
    before=$(rss)
    echo go >&"${CLIENTS_PROC[1]}"
    read -r _ <&"${CLIENTS_PROC[0]}"
    sleep 1
    after=$(rss)
    items=$((CLIENTS * FILTERS))
    what="subscription ($CLIENTS clients x $FILTERS filters)"
fi
echo go >&"${CLIENTS_PROC[1]}"
wait "$CLIENTS_PROC_PID" 2>/dev/null || true
echo "$name: RSS $before -> $after kB, $(( (after - before) * 1024 / items )) B per $what"
