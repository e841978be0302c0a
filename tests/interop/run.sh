#!/bin/sh
# Runs the Node.js interop client under ctest: installs the locked npm
# packages first when node_modules is missing (npm ci, package-lock.json).
# usage: run.sh CHATNODE CHATCLIENT
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -d "$here/node_modules" ]; then
    npm ci --prefix "$here" --no-audit --no-fund
fi
exec node "$here/interop.js" "$@"
