#!/usr/bin/env bash
# Installs every Debian package chatnode needs to build, run and test, plus
# any packages named as arguments (the bench and callgrind scripts' tools).
# Idempotent: installs only what is missing, so `make` can call it every time.
#
#   scripts/install-deps.sh [EXTRA-PACKAGE...]
set -euo pipefail

PACKAGES=(
    build-essential cmake ninja-build pkg-config
    libuv1-dev libsodium-dev librocksdb-dev
    libprotobuf-c-dev protobuf-c-compiler libcbor-dev libssl-dev
    libwslay-dev libinih-dev libcmocka-dev libjansson-dev # wslay: client/ only (node has node/ws.c)
    clang libclang-rt-14-dev clang-format
    openssl ca-certificates python3 prometheus
    testssl.sh fiu-utils libfiu0
)

PACKAGES+=("$@")

# Node.js + npm run the interop test (tests/interop); Debian's packages
# unless a node is installed already.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
