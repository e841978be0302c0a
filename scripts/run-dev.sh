#!/usr/bin/env bash
# `make run`: a node with embedded defaults under ./var, in the foreground.
# First start creates the dev TLS certificate (./var/tls) and the node key
# (./var/data/node.key). Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var/data
chmod 700 var
./scripts/dev-cert.sh var/tls
echo "chatnode: wss://127.0.0.1:8443  data ./var/data  admin ./var/admin.sock  metrics http://127.0.0.1:9464/metrics"
echo "try:      build/release/client/chatclient --ca var/tls/cert.pem --home /tmp/alice register alice"
exec build/release/node/chatnode \
    --listen 127.0.0.1:8443 --data var/data \
    --tls-cert var/tls/cert.pem --tls-key var/tls/key.pem \
    --admin-socket var/admin.sock --metrics 127.0.0.1:9464 "$@"
