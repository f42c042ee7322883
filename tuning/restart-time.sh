#!/usr/bin/env bash
# Restart time with persisted state, shardmq against Mosquitto (docs/PERSISTENCE.md, issue 16).
#
# For each broker: start it with `persistence true` in a fresh directory, seed RETAINED retained
# messages of SIZE bytes and SESSIONS persistent sessions (one subscription each, made 5,000 at a
# time by the bundled loadgen), stop it with SIGTERM (Mosquitto writes its database then; the time is
# reported), start it again and measure until it answers an MQTT CONNECT, then report its RSS and the
# size of its files.
#
# Usage: tuning/restart-time.sh [RETAINED [SESSIONS [SIZE]]]   (default 1000000 100000 64)
# Needs: target/release/shardmq and shardmq-loadgen (cargo build --release --workspace), mosquitto,
# mosquitto_pub. Every process it starts is stopped by its PID.
set -euo pipefail

RETAINED=${1:-1000000}
SESSIONS=${2:-100000}
SIZE=${3:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARDMQ=$ROOT/target/release/shardmq
LOADGEN=$ROOT/target/release/shardmq-loadgen
WORK=$(mktemp -d /tmp/shardmq-restart-XXXXXX)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
PID=

cleanup() {
    local rc=$?
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    if [ "$rc" = 0 ]; then
        rm -rf "$WORK"
    else
        echo "failed (status $rc): logs kept in $WORK" >&2
    fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

# Polls until the broker on port $1 answers a CONNECT (mosquitto_pub exits 0), at most 600 s.
wait_serving() {
    local deadline=$(( $(now_ms) + 600000 ))
    until mosquitto_pub -p "$1" -t restart/probe -m x -q 0 2>/dev/null; do
        [ "$(now_ms)" -lt "$deadline" ] || { echo "broker on port $1 never served" >&2; exit 1; }
        sleep 0.01
    done
}

start() { # name port command...
    local name=$1 port=$2
    shift 2
    "$@" >"$WORK/$name.log" 2>&1 &
    PID=$!
}

# Stops the broker (SIGTERM) and waits until it is gone; its duration in ms goes to STOP_MS.
stop() {
    local t0
    t0=$(now_ms)
    kill -TERM "$PID"
    wait "$PID" || true
    while kill -0 "$PID" 2>/dev/null; do sleep 0.01; done
    PID=
    STOP_MS=$(( $(now_ms) - t0 ))
}

measure() { # name port dir command...
    local name=$1 port=$2 dir=$3
    shift 3
    start "$name" "$port" "$@"
    wait_serving "$port"
    echo "$(date +%T) $name: seeding $RETAINED retained messages" >&2
    "$LOADGEN" retained --port "$port" --qos 1 --topics "$RETAINED" --size "$SIZE" --subs 1 \
        --duration 1s --warmup 0s --drain 1s --setup-timeout 600s >"$WORK/$name.seed" 2>&1
    echo "$(date +%T) $name: making $SESSIONS persistent sessions" >&2
    local made=0
    while [ "$made" -lt "$SESSIONS" ]; do
        local n=$(( SESSIONS - made < 5000 ? SESSIONS - made : 5000 ))
        "$LOADGEN" p2p --port "$port" --qos 1 --persistent --pairs "$n" --duration 1s \
            --warmup 0s --client-id-prefix "rs$made-" >"$WORK/$name.sessions" 2>&1
        made=$(( made + n ))
    done
    stop
    local stop_ms=$STOP_MS
    local t0
    t0=$(now_ms)
    start "$name" "$port" "$@"
    wait_serving "$port"
    local up_ms=$(( $(now_ms) - t0 ))
    local rss
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
    local bytes
    bytes=$(du -sb "$dir" | cut -f1)
    printf '%-10s retained %d x %d B, %d sessions: stop %d ms, restart to serving %d ms, RSS %d MiB, files %d MiB\n' \
        "$name" "$RETAINED" "$SIZE" "$SESSIONS" "$stop_ms" "$up_ms" $(( rss / 1024 )) $(( bytes / 1048576 ))
    stop
}

mkdir -p "$WORK/shardmq" "$WORK/mosquitto"
chmod 777 "$WORK/shardmq" "$WORK/mosquitto"
cat >"$WORK/shardmq.conf" <<EOF
listener 19101 127.0.0.1
allow_anonymous true
persistence true
persistence_location $WORK/shardmq
max_connections -1
log_type error
EOF
cat >"$WORK/mosquitto.conf" <<EOF
listener 19102 127.0.0.1
allow_anonymous true
persistence true
persistence_location $WORK/mosquitto/
max_connections -1
log_type error
EOF
if [ "$(id -u)" = 0 ]; then
    echo "user root" >>"$WORK/shardmq.conf"
    echo "user root" >>"$WORK/mosquitto.conf"
fi

measure shardmq 19101 "$WORK/shardmq" "$SHARDMQ" -c "$WORK/shardmq.conf"
measure mosquitto 19102 "$WORK/mosquitto" mosquitto -c "$WORK/mosquitto.conf"
