#!/usr/bin/env bash
# Compare shardmq with Mosquitto on loopback using the bundled load generator (loadgen).
#
#   tuning/compare.sh [options] SHARDMQ_BIN [MOSQUITTO_BIN]
#
# Starts each broker on a free loopback port (one broker at a time), runs the same matrix of loadgen
# scenarios against it, and prints one table with shardmq/mosquitto ratios for throughput (higher is
# better for shardmq) and p99 latency (lower is better for shardmq).
#
# Matrix: p2p (10 pairs) / fan-in (10 -> 1) / fan-out (1 -> 100) x QoS 0/1 x payload 16/1024 B at max
# rate, plus fixed-rate runs for latency (p2p QoS 0 and 1, fan-in QoS 1, fan-out QoS 0). Each run is
# warmup + duration (1s + 4s by default); the whole matrix takes about 3-4 minutes with two brokers.
#
# Options:
#   --shards N          shardmq "shards" setting (default 1)
#   --conf LINE         an extra line for shardmq's config (repeatable), e.g. --conf 'cpu_affinity false'
#   --threads N         loadgen worker threads (default: loadgen's default, the number of CPUs)
#   --duration D        measure window of each run (default 4s)
#   --warmup D          warmup of each run (default 1s)
#   --rate R            per-publisher rate of the fixed-rate p2p / fan-in runs (default 1000 msg/s)
#   --fanout-rate R     publisher rate of the fixed-rate fan-out run (default 100 msg/s, x100 deliveries)
#   --mqtt V            MQTT version for every run: 3.1.1 (default) or 5
#   --loadgen PATH      loadgen binary (default: $LOADGEN, else built with cargo)
#   --broker-cpus LIST  run the brokers under `taskset -c LIST`
#   --loadgen-cpus LIST run loadgen under `taskset -c LIST`
#   --only REGEX        run only the matrix rows whose name matches REGEX (e.g. 'fixed')
#   --out DIR           keep the JSON results and broker logs there (default: a new temporary directory)
#   --no-mosquitto      run shardmq only
#
# Without MOSQUITTO_BIN, `mosquitto` is looked up on PATH and in /usr/sbin; if none is found only shardmq
# runs. The script kills only the broker processes it started, by PID.

set -euo pipefail

usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; }

SHARDS=1
THREADS=""
DURATION=4s
WARMUP=1s
RATE=1000
FANOUT_RATE=100
MQTT=3.1.1
LOADGEN_BIN="${LOADGEN:-}"
BROKER_CPUS=""
LOADGEN_CPUS=""
ONLY=""
OUT=""
NO_MOSQUITTO=0
POSITIONAL=()
EXTRA_CONF=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --shards) SHARDS="$2"; shift 2 ;;
        --conf) EXTRA_CONF+=("$2"); shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --warmup) WARMUP="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --fanout-rate) FANOUT_RATE="$2"; shift 2 ;;
        --mqtt) MQTT="$2"; shift 2 ;;
        --loadgen) LOADGEN_BIN="$2"; shift 2 ;;
        --broker-cpus) BROKER_CPUS="$2"; shift 2 ;;
        --loadgen-cpus) LOADGEN_CPUS="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --no-mosquitto) NO_MOSQUITTO=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) POSITIONAL+=("$1"); shift ;;
    esac
done

if [[ ${#POSITIONAL[@]} -lt 1 || ${#POSITIONAL[@]} -gt 2 ]]; then
    usage >&2
    exit 2
fi
SHARDMQ_BIN="${POSITIONAL[0]}"
MOSQUITTO_BIN="${POSITIONAL[1]:-}"
if [[ ! -x "$SHARDMQ_BIN" ]]; then
    echo "compare.sh: $SHARDMQ_BIN is not an executable" >&2
    exit 2
fi
if [[ $NO_MOSQUITTO -eq 1 ]]; then
    MOSQUITTO_BIN=""
elif [[ -z "$MOSQUITTO_BIN" ]]; then
    MOSQUITTO_BIN="$(command -v mosquitto || true)"
    [[ -z "$MOSQUITTO_BIN" && -x /usr/sbin/mosquitto ]] && MOSQUITTO_BIN=/usr/sbin/mosquitto
    [[ -z "$MOSQUITTO_BIN" ]] && echo "compare.sh: no mosquitto found; running shardmq only" >&2
elif [[ ! -x "$MOSQUITTO_BIN" ]]; then
    echo "compare.sh: $MOSQUITTO_BIN is not an executable" >&2
    exit 2
fi

REPO="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "$LOADGEN_BIN" ]]; then
    echo "compare.sh: building loadgen (cargo build --release -p shardmq-loadgen)..." >&2
    (cd "$REPO" && cargo build --release -p shardmq-loadgen >&2)
    LOADGEN_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/shardmq-loadgen"
fi
if [[ ! -x "$LOADGEN_BIN" ]]; then
    echo "compare.sh: loadgen binary $LOADGEN_BIN not found" >&2
    exit 2
fi

if [[ -z "$OUT" ]]; then
    OUT="$(mktemp -d "${TMPDIR:-/tmp}/shardmq-compare.XXXXXX")"
fi
mkdir -p "$OUT"

BROKER_PID=""
stop_broker() {
    if [[ -n "$BROKER_PID" ]]; then
        if kill -0 "$BROKER_PID" 2>/dev/null; then
            kill -TERM "$BROKER_PID" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$BROKER_PID" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$BROKER_PID" 2>/dev/null && kill -KILL "$BROKER_PID" 2>/dev/null || true
        fi
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}
trap stop_broker EXIT
trap 'stop_broker; exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
    done
    echo "compare.sh: no free port found" >&2
    return 1
}

# start_broker NAME -> sets BROKER_PID and PORT, waits until the port accepts connections.
start_broker() {
    local name="$1" conf="$OUT/$1.conf" log="$OUT/$1.log" tries
    local -a pin=()
    [[ -n "$BROKER_CPUS" ]] && pin=(taskset -c "$BROKER_CPUS")
    for tries in 1 2 3; do
        PORT="$(free_port)"
        if [[ "$name" == mosquitto ]]; then
            printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n' "$PORT" >"$conf"
            "${pin[@]}" "$MOSQUITTO_BIN" -c "$conf" >>"$log" 2>&1 &
        else
            printf 'listener %s 127.0.0.1\nallow_anonymous true\nshards %s\n' "$PORT" "$SHARDS" >"$conf"
            [[ ${#EXTRA_CONF[@]} -gt 0 ]] && printf '%s\n' "${EXTRA_CONF[@]}" >>"$conf"
            "${pin[@]}" "$SHARDMQ_BIN" -c "$conf" >>"$log" 2>&1 &
        fi
        BROKER_PID=$!
        for _ in $(seq 100); do
            if ! kill -0 "$BROKER_PID" 2>/dev/null; then
                break
            fi
            if port_in_use "$PORT"; then
                return 0
            fi
            sleep 0.05
        done
        echo "compare.sh: $name did not start on port $PORT (try $tries); see $log" >&2
        stop_broker
    done
    return 1
}

# Matrix rows: NAME|loadgen arguments.
MATRIX=()
for sc in p2p fanin fanout; do
    case $sc in
        p2p) who="--pairs 10" ;;
        fanin) who="--pubs 10" ;;
        fanout) who="--subs 100" ;;
    esac
    for q in 0 1; do
        for p in 16 1024; do
            MATRIX+=("$sc q$q ${p}B max|$sc --qos $q --size $p $who --rate 0")
        done
    done
done
MATRIX+=("p2p q0 16B fixed|p2p --qos 0 --size 16 --pairs 10 --rate $RATE")
MATRIX+=("p2p q1 16B fixed|p2p --qos 1 --size 16 --pairs 10 --rate $RATE")
MATRIX+=("fanin q1 16B fixed|fanin --qos 1 --size 16 --pubs 10 --rate $RATE")
MATRIX+=("fanout q0 16B fixed|fanout --qos 0 --size 16 --subs 100 --rate $FANOUT_RATE")

# json_num JSON KEY: a number from loadgen's one-line JSON (KEY may be latency_us.pNN).
# Prints "-" when the key is missing or not a number (e.g. null percentiles when there was no sample).
json_num() {
    local json="$1" key="$2" v
    case "$key" in
        latency_us.*) v="$(sed -n "s/.*\"latency_us\":{[^}]*\"${key#latency_us.}\":\([-0-9.eE+][-0-9.eE+]*\).*/\1/p" <<<"$json")" ;;
        *) v="$(sed -n "s/.*\"$key\":\([-0-9.eE+][-0-9.eE+]*\).*/\1/p" <<<"$json")" ;;
    esac
    echo "${v:--}"
}

declare -A THR P99 LOSS NOTE
run_matrix() {
    local broker="$1" row name lgargs json rc
    local -a pin=() threads=()
    [[ -n "$LOADGEN_CPUS" ]] && pin=(taskset -c "$LOADGEN_CPUS")
    [[ -n "$THREADS" ]] && threads=(--threads "$THREADS")
    start_broker "$broker" || { echo "compare.sh: cannot start $broker" >&2; return 1; }
    for row in "${MATRIX[@]}"; do
        name="${row%%|*}"
        lgargs="${row#*|}"
        if [[ -n "$ONLY" ]] && ! [[ "$name" =~ $ONLY ]]; then
            continue
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "compare.sh: $broker died before '$name'; restarting it" >&2
            NOTE["$broker|$name"]="broker restarted"
            stop_broker
            start_broker "$broker" || return 1
        fi
        echo "compare.sh: $broker: $name" >&2
        rc=0
        # shellcheck disable=SC2086 # lgargs is a list of words
        json="$(timeout --kill-after=5 120 "${pin[@]}" "$LOADGEN_BIN" $lgargs --port "$PORT" --protocol "$MQTT" \
            --warmup "$WARMUP" --duration "$DURATION" --drain 5s "${threads[@]}" --json --quiet \
            2>>"$OUT/loadgen.log")" || rc=$?
        printf '%s\t%s\t%s\n' "$broker" "$name" "$json" >>"$OUT/results.tsv"
        if [[ $rc -ne 0 && $rc -ne 3 ]] || [[ -z "$json" ]]; then
            THR["$broker|$name"]="-"; P99["$broker|$name"]="-"; LOSS["$broker|$name"]="-"
            NOTE["$broker|$name"]="failed (rc $rc)"
            continue
        fi
        THR["$broker|$name"]="$(json_num "$json" msgs_per_s)"
        P99["$broker|$name"]="$(json_num "$json" p99_us)"
        LOSS["$broker|$name"]="$(json_num "$json" loss_pct)"
        [[ $rc -eq 3 ]] && NOTE["$broker|$name"]="conn errors"
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            NOTE["$broker|$name"]="broker died"
        fi
    done
    stop_broker
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.eE+-]+$/ && b ~ /^[0-9.eE+-]+$/ && b > 0) printf "%.2f", a / b; else printf "-" }'; }
fmt_int() { awk -v a="$1" 'BEGIN { if (a ~ /^[0-9.eE+-]+$/) printf "%.0f", a; else printf "%s", a }'; }

START=$(date +%s)
run_matrix shardmq
[[ -n "$MOSQUITTO_BIN" ]] && run_matrix mosquitto
ELAPSED=$(( $(date +%s) - START ))

echo
echo "shardmq ($SHARDMQ_BIN, shards $SHARDS) vs mosquitto (${MOSQUITTO_BIN:-none}); MQTT $MQTT; warmup $WARMUP + $DURATION per run; fixed rate $RATE msg/s per publisher (fanout $FANOUT_RATE)"
echo "throughput = msg/s received in the measure window; p99 = end-to-end latency in µs; loss in % (QoS 0: informational)"
printf '%-22s %12s %12s %7s %12s %12s %7s %9s %9s  %s\n' scenario "smq msg/s" "mosq msg/s" "thr x" "smq p99" "mosq p99" "p99 x" "smq loss" "mosq loss" notes
for row in "${MATRIX[@]}"; do
    name="${row%%|*}"
    if [[ -n "$ONLY" ]] && ! [[ "$name" =~ $ONLY ]]; then
        continue
    fi
    st="${THR["shardmq|$name"]:--}"; mt="${THR["mosquitto|$name"]:--}"
    sp="${P99["shardmq|$name"]:--}"; mp="${P99["mosquitto|$name"]:--}"
    sl="${LOSS["shardmq|$name"]:--}"; ml="${LOSS["mosquitto|$name"]:--}"
    notes="${NOTE["shardmq|$name"]:+shardmq: ${NOTE["shardmq|$name"]} }${NOTE["mosquitto|$name"]:+mosquitto: ${NOTE["mosquitto|$name"]}}"
    printf '%-22s %12s %12s %7s %12s %12s %7s %9s %9s  %s\n' "$name" "$(fmt_int "$st")" "$(fmt_int "$mt")" \
        "$(ratio "$st" "$mt")" "$sp" "$mp" "$(ratio "$sp" "$mp")" "$sl" "$ml" "$notes"
done
echo
echo "raw results: $OUT/results.tsv (broker, scenario, loadgen JSON); broker logs in $OUT; took ${ELAPSED}s"
