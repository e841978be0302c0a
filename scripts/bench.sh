#!/usr/bin/env bash
# `make bench`: builds the release preset, runs every chatbench scenario
# against a fresh chatnode (pinned to core 0, one I/O loop, sync=batch) with
# chatbench pinned to core 1, then the same relay load against mosquitto
# (MQTT 3.1.1 over TLS 1.3, also on core 0), and rewrites the results table
# of docs/PERFORMANCE.md from the JSON outputs. Loopback only.
#
#   BENCH_QUICK=1     smaller sizes (a smoke run, about two minutes)
#   BENCH_PROFILE=1   also perf-record the node during relay and connect
#   BENCH_KEEP=1      keep the work directory (JSON, logs, profiles)
#   BENCH_NO_DOC=1    do not touch docs/PERFORMANCE.md
#   BENCH_NODE_BIN=…, BENCH_BIN=…, BENCH_FLOOR_BIN=…  use these binaries
#                     (the first two skip the build)
#   BENCH_COMMIT=…    the commit named in the table (with prebuilt binaries)
#   BENCH_REPEAT=N    runs of each short scenario (default 3, 1 with QUICK);
#                     the table shows the median run and the range
#   BENCH_ONLY="fanout drain"  run only these scenarios (names as in the
#                     JSON files: relay-88k relay-80k relay-50k relay-cmp fanout connect
#                     connect-ref idle drain floor-50k peer-mqtt-cmp peer-mqtt-50k
#                     peer-mqtt-80k);
#                     no doc update
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=${BENCH_QUICK:-0}
PROFILE=${BENCH_PROFILE:-0}
NODE_BIN=${BENCH_NODE_BIN:-$ROOT/build/release/node/chatnode}
BENCH_BIN=${BENCH_BIN:-$ROOT/build/release/tests/chatbench}

# Sizes (moderate, so the whole run stays well under ten minutes). FAN is the
# fanout group's size in devices, the sender's included (FAN-1 receivers, one
# group Send per round); it must not exceed the node's --max-group-members.
if [ "$QUICK" = 1 ]; then
    DUR=3 PAIRS=50 FAN=200 ROUNDS=10 CONN_RATE=1000 IDLE=2000 QUEUED=50000 TAIL=10
    REPEAT=${BENCH_REPEAT:-1}
else
    DUR=5 PAIRS=100 FAN=1000 ROUNDS=30 CONN_RATE=3000 IDLE=15000 QUEUED=200000 TAIL=20
    # This VM's core switches between a fast and a slow mode from run to
    # run (PERFORMANCE.md): one run per scenario decides a verdict by luck.
    REPEAT=${BENCH_REPEAT:-3}
fi
# connect-ref: a handshake rate both the node and the generator (one core,
# about 1,100 client handshakes/s with OpenSSL 3.0) sustain, for the node's
# CPU per handshake without a backlog.
CONN_REF_RATE=800
ONLY=${BENCH_ONLY:-}
CMP_RATE=${BENCH_CMP_RATE:-10000} # the side-by-side rate, both servers
MAX_GROUP=1000                    # the node's group limit (its default, stated; the protocol's hard maximum)

# Bench-only packages: the peer broker and the profiler.
./scripts/install-deps.sh mosquitto linux-perf

FLOOR_BIN=${BENCH_FLOOR_BIN:-$ROOT/build/release/tests/relayfloor}
if [ -z "${BENCH_NODE_BIN:-}${BENCH_BIN:-}" ]; then
    cmake --preset release >/dev/null
    cmake --build --preset release --target chatnode chatbench relayfloor
fi

WORK=$(mktemp -d /var/tmp/chatbench.XXXXXX) # the normal disk, not tmpfs
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
./scripts/dev-cert.sh "$WORK/tls" >/dev/null
ulimit -n "$(ulimit -Hn)"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "bench: nothing listens on port $1" >&2
    return 1
}

# Starts a fresh node (new data directory) and sets SERVER_PID / PORT.
start_node() {
    local name=$1
    PORT=$(free_port)
    rm -rf "$WORK/data-$name"
    taskset -c 0 "$NODE_BIN" --listen "127.0.0.1:$PORT" --data "$WORK/data-$name" \
        --tls-cert "$WORK/tls/cert.pem" --tls-key "$WORK/tls/key.pem" \
        --admin-socket '' --metrics '' --threads 1 --sync batch --log-level warn \
        --max-queued-bytes 0 --max-group-members "$MAX_GROUP" \
        --ratelimit send=1000000/s:1000000 \
        --ratelimit send-bytes=100000000000/s:100000000000 \
        --ratelimit connect=1000000/s:1000000 --ratelimit register=1000000/s:1000000 \
        --ratelimit prekey-fetch=1000000/s:1000000 \
        2>"$WORK/node-$name.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_port "$PORT"
}

start_mosquitto() {
    PORT=$(free_port)
    cat >"$WORK/mosquitto.conf" <<EOF
user root
per_listener_settings false
allow_anonymous true
persistence false
max_inflight_messages 1000
max_queued_messages 0
log_dest stderr
log_type error
listener $PORT 127.0.0.1
certfile $WORK/tls/cert.pem
keyfile $WORK/tls/key.pem
tls_version tlsv1.3
EOF
    taskset -c 0 mosquitto -c "$WORK/mosquitto.conf" 2>"$WORK/mosquitto.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_port "$PORT"
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

# run NAME SCHEME ARGS...: chatbench on core 1, its JSON line appended to $WORK/NAME.json.
run() {
    local name=$1 scheme=$2
    shift 2
    local perf_pid=""
    if [ "$PROFILE" = 1 ] && [ "$scheme" = wss ]; then
        perf record -F 999 -g -p "$SERVER_PID" -o "$WORK/$name.perf" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    echo "bench: $name: chatbench $*"
    # One JSON line per run: report.py shows the median run.
    if ! taskset -c 1 "$BENCH_BIN" "$@" --server "$scheme://127.0.0.1:$PORT" \
        --ca "$WORK/tls/cert.pem" --node-pid "$SERVER_PID" --json >"$WORK/$name.run.json"; then
        echo "bench: $name reported a failure (see the JSON ok field)" >&2
    fi
    tee -a "$WORK/$name.json" <"$WORK/$name.run.json"
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        perf report -i "$WORK/$name.perf" --no-children --sort sym --stdio -g none 2>/dev/null |
            grep -E '%' | head -40 >"$WORK/$name.perf.txt" || true
    fi
}

wanted() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

scenario() { # scenario NAME ARGS...: a fresh node for each
    local name=$1
    shift
    wanted "$name" || return 0
    start_node "$name"
    run "$name" wss "$@"
    stop_server
}

repeated() { # repeated COMMAND ARGS...: COMMAND (scenario, mqtt) REPEAT times
    for _ in $(seq 1 "$REPEAT"); do "$@"; done
}

t0=$(date +%s)
# Throughput is judged at 1.1 x the target's 80,000/s: a count taken at
# exactly the offered rate reads just under it for any server whose latency
# at the end of the run exceeds its latency at the start (PERFORMANCE.md,
# Method), while a server that cannot deliver 80,000/s delivers what it can.
# relay-80k stays for the latency at the target's rate and the side by side.
repeated scenario relay-88k relay --pairs "$PAIRS" --rate 88000 --size 256 --duration "$DUR" --drain-timeout "$TAIL"
repeated scenario relay-80k relay --pairs "$PAIRS" --rate 80000 --size 256 --duration "$DUR" --drain-timeout "$TAIL"
repeated scenario relay-50k relay --pairs "$PAIRS" --rate 50000 --size 256 --duration "$DUR" --drain-timeout "$TAIL"
repeated scenario relay-cmp relay --pairs "$PAIRS" --rate "$CMP_RATE" --size 256 --duration "$DUR" --drain-timeout "$TAIL"
repeated scenario fanout fanout --members "$FAN" --rounds "$ROUNDS" --interval 300 --warmup 0.6 --size 256
scenario connect connect --rate "$CONN_RATE" --duration "$DUR" --warmup 0.5
repeated scenario connect-ref connect --rate "$CONN_REF_RATE" --duration "$DUR" --warmup 0.5
scenario idle idle --connections "$IDLE" --concurrency 128 --hold 3
repeated scenario drain drain --queued "$QUEUED" --size 256 --ack-batch 256 --drain-timeout "$TAIL"

mqtt() { # mqtt NAME RATE: the relay load on a fresh mosquitto
    wanted "$1" || return 0
    start_mosquitto
    run "$1" mqtts peer-mqtt --pairs "$PAIRS" --rate "$2" --size 256 --duration "$DUR" \
        --qos 1 --drain-timeout "$TAIL"
    stop_server
}
# The relay's reads and writes alone at 50,000/s (no TLS, no store; the
# relaying process on core 0, its generator on core 1): the machine's
# floor under the relay-50k row.
floor() {
    wanted floor-50k || return 0
    echo "bench: floor-50k: relayfloor --pairs $PAIRS --rate 50000 --duration $DUR"
    taskset -c 0 "$FLOOR_BIN" --pairs "$PAIRS" --rate 50000 --duration "$DUR" --gen-cpu 1 \
        >"$WORK/floor-50k.run.json" || echo "bench: floor-50k failed" >&2
    tee -a "$WORK/floor-50k.json" <"$WORK/floor-50k.run.json"
}
repeated floor

repeated mqtt peer-mqtt-cmp "$CMP_RATE"
repeated mqtt peer-mqtt-50k 50000
repeated mqtt peer-mqtt-80k 80000
echo "bench: all scenarios ran in $(($(date +%s) - t0)) s"

MACHINE="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), Linux $(uname -r)"
COMMIT=${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
if [ -z "${BENCH_COMMIT:-}" ] && [ -n "$(git status --porcelain -- node store proto common crypto 2>/dev/null)" ]; then
    COMMIT="$COMMIT+local changes"
fi
if [ "${BENCH_NO_DOC:-0}" = 1 ] || [ -n "$ONLY" ]; then exit 0; fi
python3 "$ROOT/tests/bench/report.py" "$WORK" "$ROOT/docs/PERFORMANCE.md" "$MACHINE" "$COMMIT"
echo "bench: docs/PERFORMANCE.md updated"
