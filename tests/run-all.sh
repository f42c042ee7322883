#!/usr/bin/env bash
# Installs what the tests need, then runs all of them (`cargo test --workspace --all-targets`): the
# unit tests of every workspace member, the numbered spec-area integration tests (tests/NN_*.rs), the
# interoperability tests with mosquitto_pub / mosquitto_sub and Python paho-mqtt, and the benchmarks
# in test mode; then the tests once more with 64 shards (SHARDMQ_TEST_SHARDS=64).
#
#   bash tests/run-all.sh                  install what is missing (quick when all is there), then test
#   bash tests/run-all.sh --install-only   only install
#   bash tests/run-all.sh --no-install     only test
#   bash tests/run-all.sh -- ARGS          extra arguments for the test binaries (e.g. a name filter)
#
# Installing is for a fresh Debian (or Ubuntu) machine, as root: apt packages (git, gcc, make,
# pkg-config, curl, mosquitto-clients, nats-server, python3, python3-paho-mqtt; paho-mqtt from pip
# if apt's is missing or older than 1.6) and, only when `cargo` is missing, Rust stable with rustfmt and clippy
# through rustup. Without root, missing packages are listed and the tests that need them fail, saying
# what to install (SHARDMQ_SKIP_INTEROP=1 skips the interop tests instead).
#
# Exit status: with --install-only, non-zero if something could not be installed; otherwise non-zero
# if any test failed (a missing tool makes the tests that need it fail).
#
# RUST_TEST_THREADS (default: CPUs, at most 4) sets how many tests of one file run at once.
# SHARDMQ_TEST_BROKER=mosquitto runs the integration tests against a real Mosquitto (`mosquitto` on
# PATH, not installed by this script) instead of shardmq.
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
test=1
test_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --install-only) test=0 ;;
        --no-install) install=0 ;;
        --) shift; test_args=("$@"); break ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [--install-only|--no-install] [-- TEST_ARGS...]" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "run-all: $*"; }
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
# paho-mqtt 1.6 or newer importable by the python3 on PATH (the one the tests run).
paho_ok() {
    python3 -c "import paho.mqtt, paho.mqtt.client, sys
v = tuple(int(x) for x in paho.mqtt.__version__.split('.')[:2])
sys.exit(0 if v >= (1, 6) else 1)" >/dev/null 2>&1
}
use_rustup_path() {
    if ! have cargo && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
}

# Debian packages the build and the tests need. libc6-dev: the C library headers and startup files
# gcc links with (a Recommends of gcc, so listed explicitly for --no-install-recommends).
# mosquitto: for mosquitto_passwd, which writes the password files the auth tests load (tests/09_auth.rs).
# systemd: systemd-analyze, which checks the unit in packaging/ (tests/13_process.rs).
# chromium, nodejs, npm: the browser test (tests/17_browser.rs: MQTT.js in headless Chromium through
# Playwright, whose npm packages `npm ci` installs into tests/browser/node_modules).
# nats-server: the NATS cluster with JetStream the cluster tests start (tests/cluster/nats.sh,
# tests/26_cluster_link.rs).
PACKAGES=(git gcc libc6-dev make pkg-config curl ca-certificates coreutils mosquitto-clients mosquitto python3
          chromium systemd nats-server)

install_deps() {
    local missing=()
    if have dpkg-query; then
        for p in "${PACKAGES[@]}"; do
            pkg_installed "$p" || missing+=("$p")
        done
    else
        for tool in git gcc make pkg-config curl mosquitto_pub mosquitto_sub mosquitto_passwd nats-server stdbuf python3; do
            have "$tool" || missing+=("$tool")
        done
    fi
    local want_paho=0
    if ! have python3 || ! paho_ok; then
        want_paho=1
    fi

    if [ ${#missing[@]} -gt 0 ] || [ "$want_paho" = 1 ]; then
        if ! is_root || ! have apt-get; then
            log "cannot install (needs root and apt-get); missing: ${missing[*]}" \
                "$([ "$want_paho" = 1 ] && echo "paho-mqtt>=1.6 for python3")" >&2
        else
            export DEBIAN_FRONTEND=noninteractive
            log "apt-get install: ${missing[*]:-}$([ "$want_paho" = 1 ] && echo " python3-paho-mqtt")"
            apt-get update -qq
            local had_mosquitto=0
            pkg_installed mosquitto && had_mosquitto=1
            apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
            if [ "$had_mosquitto" = 0 ] && have systemctl; then
                # Only mosquitto_passwd is wanted: do not leave a Mosquitto service behind on port 1883.
                systemctl disable --now mosquitto >/dev/null 2>&1 || true
            fi
            if [ "$want_paho" = 1 ]; then
                # Not fatal: the package may be missing (older releases) or too old (Debian 11 has 1.5).
                apt-get install -y -qq --no-install-recommends python3-paho-mqtt >/dev/null 2>&1 \
                    || log "apt has no python3-paho-mqtt; trying pip"
            fi
        fi
    fi

    if have python3 && ! paho_ok; then
        # The apt package is missing, too old, or python3 on PATH is not Debian's (pyenv, venv).
        if ! python3 -m pip --version >/dev/null 2>&1 && is_root && have apt-get; then
            apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
        fi
        log "installing paho-mqtt with pip for $(command -v python3)"
        # Debian's own python3 refuses plain pip installs (PEP 668), hence the second form.
        python3 -m pip install -q 'paho-mqtt>=1.6,<3' 2>/dev/null \
            || python3 -m pip install -q --break-system-packages 'paho-mqtt>=1.6,<3' \
            || log "could not install paho-mqtt for python3" >&2
    fi

    use_rustup_path
    if ! have cargo; then
        if have curl; then
            log "installing Rust stable with rustfmt and clippy (rustup, into ~/.cargo)"
            curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
                | sh -s -- -y --profile minimal --default-toolchain stable --component rustfmt,clippy
            use_rustup_path
        else
            log "cargo is missing and curl is not there to install it: see https://rustup.rs" >&2
        fi
    fi

    if ! have node || ! have npm; then
        if is_root && have apt-get; then
            log "apt-get install nodejs npm"
            apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
        fi
    fi
    if have npm && [ ! -d tests/browser/node_modules/playwright-core ]; then
        log "npm ci --prefix tests/browser (MQTT.js, playwright-core)"
        npm ci --prefix tests/browser --no-audit --no-fund >/dev/null \
            || log "could not install the browser test's npm packages" >&2
    fi

    local ok=1
    for tool in cargo gcc mosquitto_pub mosquitto_sub python3 node chromium; do
        if ! have "$tool"; then
            log "still missing: $tool" >&2
            ok=0
        fi
    done
    if have python3 && ! paho_ok; then
        log "still missing: paho-mqtt >= 1.6 for $(command -v python3)" >&2
        ok=0
    fi
    [ "$ok" = 1 ]
}

if [ "$install" = 1 ]; then
    if ! install_deps; then
        if [ "$test" = 0 ]; then
            exit 1
        fi
        log "continuing to the tests; the ones that need what is missing will fail" >&2
    fi
fi
if [ "$test" = 0 ]; then
    exit 0
fi

use_rustup_path
if ! have cargo; then
    log "cargo not found (install Rust from https://rustup.rs, or run this script as root)" >&2
    exit 1
fi
cpus=$(nproc 2>/dev/null || echo 2)
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$(( cpus < 4 ? cpus : 4 ))}"
log "$(cargo --version); mosquitto_pub: $(command -v mosquitto_pub || echo MISSING);" \
    "python3: $(command -v python3 || echo MISSING)," \
    "paho-mqtt $(python3 -c 'import paho.mqtt as m; print(m.__version__)' 2>/dev/null || echo MISSING);" \
    "RUST_TEST_THREADS=$RUST_TEST_THREADS"
status=0
cargo test --workspace --all-targets --no-fail-fast -- "${test_args[@]}" || status=$?
# The integration tests again with 64 shards (their cases run with 1 and 4 shards above): the
# cross-shard paths with more shards than a 2-core machine has cores by far, and the per-shard
# costs of issue 18 (tests/common/mod.rs, `shard_counts`).
log "again with 64 shards (SHARDMQ_TEST_SHARDS=64)"
SHARDMQ_TEST_SHARDS=64 cargo test --workspace --tests --no-fail-fast -- "${test_args[@]}" || status=$?
if [ "$status" != 0 ]; then
    log "FAILED (exit status $status)" >&2
else
    log "all tests passed"
fi
exit "$status"
