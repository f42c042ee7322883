#!/usr/bin/env bash
# Runs every paho-mqtt script in this directory against a broker, for MQTT 3.1, 3.1.1 and 5.0.
#   tests/python/run_against.sh HOST PORT
# e.g. against a real Mosquitto:  mosquitto -p 18830 & tests/python/run_against.sh 127.0.0.1 18830
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 HOST PORT" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
failed=0
for script in pubsub retained will session; do
    for proto in 31 311 5; do
        if ! python3 "$here/$script.py" "$1" "$2" --protocol "$proto"; then
            failed=1
        fi
    done
done
exit $failed
