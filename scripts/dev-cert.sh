#!/usr/bin/env bash
# Creates a self-signed development TLS certificate for localhost and
# 127.0.0.1 (usable as its own CA with `chatclient --ca`), unless present.
# usage: dev-cert.sh DIR
# P-256 on purpose: with OpenSSL 3.0 an ECDSA P-256 signature costs the node
# about half an Ed25519 one per handshake, and clients verify it faster too
# (docs/PERFORMANCE.md "connect").
set -euo pipefail
dir=${1:?usage: dev-cert.sh DIR}
mkdir -p "$dir"
chmod 700 "$dir"
if [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ]; then
    exit 0
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" -days 825 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
chmod 600 "$dir/key.pem"
echo "dev-cert: created $dir/cert.pem (self-signed, for development only)"
