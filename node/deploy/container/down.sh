#!/usr/bin/env bash
# Stops and removes the containers and network of up.sh; the stores (named volumes) stay, so
# up.sh continues the same chain. `down.sh -v` deletes the stores too (the genesis and keys in
# ./net stay: remove that directory to start a new chain).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export TWINLEDGER_NET_DIR=${TWINLEDGER_NET_DIR:-$here/net}
docker-compose -p "${COMPOSE_PROJECT_NAME:-twinledger}" down "$@"
