#!/usr/bin/env bash
# Builds the twinledger-node container image FROM scratch, pulling nothing: a root filesystem of
# the given twinledger-node binary, exactly the shared libraries `ldd` names for it (libc,
# libgcc_s, libm, the dynamic loader, ...), /etc/passwd and /etc/group with the user
# `twinledger` (uid and gid 10001), and empty /data and /keys owned by that user (the volumes).
#
# Usage: build-image.sh [BINARY] [TAG]
#   BINARY  default: target/release/twinledger-node (or $CARGO_TARGET_DIR/release/...)
#   TAG     default: twinledger-node:local
# Needs: docker (the engine's classic builder is enough), ldd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$repo/target}/release/twinledger-node}
tag=${2:-twinledger-node:local}

if [ ! -x "$bin" ]; then
  echo "error: $bin is not an executable (build it: cargo build --release -p twinledger-node)" >&2
  exit 1
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/twinledger-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
owned=$ctx/owned
mkdir -p "$root/usr/local/bin" "$root/etc" "$owned/data" "$owned/keys"

cp "$bin" "$root/usr/local/bin/twinledger-node"
chmod 0755 "$root/usr/local/bin/twinledger-node"

# Every library the dynamic loader will open, at the path ldd names (symlinks followed), and the
# loader itself. A library ldd cannot find is an error, not a silent omission.
libs=$(ldd "$bin") || { echo "error: ldd $bin failed (a static binary needs no libraries: remove this step)" >&2; exit 1; }
if printf '%s\n' "$libs" | grep -q 'not found'; then
  echo "error: ldd cannot find every library of $bin:" >&2
  printf '%s\n' "$libs" | grep 'not found' >&2
  exit 1
fi
printf '%s\n' "$libs" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
twinledger:x:10001:10001:twinledger node:/data:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
twinledger:x:10001:
GROUP
# Name lookups (the genesis' /dns4 peer addresses): the container's /etc/hosts, then DNS.
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"

cp "$here/Dockerfile" "$ctx/Dockerfile"
echo "== image $tag from $bin; root filesystem:"
(cd "$root" && find . -type f | sort | sed 's/^\./  /')
# The classic builder: no BuildKit or buildx plugin needed, and FROM scratch pulls nothing.
DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" "$ctx"
echo "== built $tag"
