#!/usr/bin/env bash
# Four hospitals and an observer in containers, from this checkout, pulling no image:
#   1. builds twinledger-node and twinledger-devnet (release),
#   2. builds the image twinledger-node:local FROM scratch (build-image.sh),
#   3. the first time: makes a genesis and keys in ./net (`twinledger-devnet init`, p2p
#      addresses /dns4/hospital-<i>/tcp/7700: the containers' names on their network),
#   4. starts them: docker-compose -p twinledger up -d (compose.yaml).
# APIs: http://127.0.0.1:7600 (hospital-0) ... 7603 (hospital-3), 7604 (observer).
# Stop with down.sh (add -v to delete the stores as well).
# `up.sh --debug` builds and runs the debug binary instead (quicker to build, slower to run).
set -euo pipefail
profile=release
case "${1:-}" in
  --debug) profile=debug ;;
  "") ;;
  *) echo "usage: $0 [--debug]" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
project=${COMPOSE_PROJECT_NAME:-twinledger}
export TWINLEDGER_IMAGE=${TWINLEDGER_IMAGE:-twinledger-node:local}
export TWINLEDGER_NET_DIR=${TWINLEDGER_NET_DIR:-$here/net}

if [ "$profile" = release ]; then
  (cd "$repo" && cargo build --release --locked -p twinledger-node --bins)
else
  (cd "$repo" && cargo build --locked -p twinledger-node --bins)
fi
bin=${CARGO_TARGET_DIR:-$repo/target}/$profile
"$here/build-image.sh" "$bin/twinledger-node" "$TWINLEDGER_IMAGE"

net=$TWINLEDGER_NET_DIR
if [ ! -f "$net/genesis.json" ]; then
  "$bin/twinledger-devnet" init --dir "$net" --validators 4 --observers 1 \
    --p2p-addr '/dns4/hospital-{i}/tcp/7700'
fi
# The nodes run as uid 10001 and refuse a key file others can read: the node keys (mode 0600)
# must belong to that user. The user keys in $net/keys stay yours.
if ! chown -R 10001:10001 "$net"/validator-* "$net"/observer-*; then
  echo "error: cannot give the node keys in $net to uid 10001 (run as root, or: sudo chown -R 10001:10001 $net/validator-* $net/observer-*)" >&2
  exit 1
fi
chmod 0644 "$net/genesis.json"

cd "$here"
docker-compose -p "$project" up -d
docker-compose -p "$project" ps
echo
echo "APIs: http://127.0.0.1:7600 (hospital-0) ... http://127.0.0.1:7603 (hospital-3), http://127.0.0.1:7604 (observer)"
echo "user keys (development only): $net/keys"
echo "stop: $here/down.sh   (down.sh -v also deletes the stores)"
