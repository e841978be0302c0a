#!/usr/bin/env bash
# `make callgrind`: the store's instructions per stored copy, counted by
# valgrind --tool=callgrind, for the one-to-one and the group-send shapes
# of storebench. Unlike CPU time on this shared machine (which swings
# between two modes from run to run), instruction counts repeat to within
# about 1 % (the hash key and the nonces are random per run), so two
# commits can be compared on changes of a few percent.
#
# Each shape runs twice, with N and 2N messages; the difference divided by
# N is the marginal count per copy (opening and closing the store cancel
# out). The top functions by own instructions come from the 2N run.
#
#   CALLGRIND_MESSAGES=N   messages of the smaller run (default 20000)
#   CALLGRIND_TOP=K        functions listed per shape (default 15)
#   CALLGRIND_KEEP=DIR     keep the callgrind.out files in DIR
#   STOREBENCH_BIN=…       use this storebench and skip the build
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

N=${CALLGRIND_MESSAGES:-20000}
TOP=${CALLGRIND_TOP:-15}
BIN=${STOREBENCH_BIN:-$ROOT/build/release/tests/storebench}
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -gt 0 ] || { echo "callgrind: CALLGRIND_MESSAGES must be a positive integer" >&2; exit 2; }

./scripts/install-deps.sh valgrind
if [ -z "${STOREBENCH_BIN:-}" ]; then
    cmake --preset release >/dev/null
    cmake --build --preset release --target storebench >/dev/null
fi

WORK=$(mktemp -d /tmp/cn_callgrind.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# instructions NAME MESSAGES [storebench args...]: prints the total Ir
instructions() {
    local name=$1 n=$2
    shift 2
    local out="$WORK/callgrind.out.$name.$n"
    rm -rf "$WORK/db"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" --messages "$n" \
        --dir "$WORK/db" "$@" >"$WORK/log.$name.$n" 2>&1 ||
        { cat "$WORK/log.$name.$n" >&2; echo "callgrind: storebench failed ($name)" >&2; exit 1; }
    awk '/Collected :/ {print $NF}' "$WORK/log.$name.$n"
}

shape() { # shape NAME [storebench args...]
    local name=$1
    shift
    local a b
    a=$(instructions "$name" "$N" "$@")
    b=$(instructions "$name" $((2 * N)) "$@")
    printf '%-8s %s instructions per copy (%s messages: %s, %s: %s)\n' "$name" \
        $(((b - a) / N)) "$N" "$a" $((2 * N)) "$b"
    callgrind_annotate --inclusive=no "$WORK/callgrind.out.$name.$((2 * N))" 2>/dev/null |
        awk -v top="$TOP" '/^-+$/ {sep++; next} sep == 6 && NF && shown < top {print "    " $0; shown++}' |
        cut -c1-150
}

echo "callgrind: $(basename "$BIN"), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
shape one-to-one
shape group --group 999
if [ -n "${CALLGRIND_KEEP:-}" ]; then
    mkdir -p "$CALLGRIND_KEEP"
    cp "$WORK"/callgrind.out.* "$CALLGRIND_KEEP"/
fi
