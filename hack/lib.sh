#!/usr/bin/env bash
# Shared helpers for keysync's build scripts: versions, the per-user cache, input hashes.
set -euo pipefail

KEYSYNC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../versions.env
. "$KEYSYNC_ROOT/versions.env"
# Built binaries and images live outside the checkout so a fresh clone (CI) reuses them.
KEYSYNC_CACHE=${KEYSYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keysync}
mkdir -p "$KEYSYNC_CACHE"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# input_hash FILE... prints a short hash of the named files' contents and names.
input_hash() {
  (cd "$KEYSYNC_ROOT" && for f in "$@"; do printf '%s\n' "$f"; cat "$f"; done) | sha256sum | cut -c1-12
}

# publish SRC DST moves a finished build into place atomically (same filesystem).
publish() {
  local src=$1 dst=$2
  rm -rf "$dst.old"
  [ -e "$dst" ] && mv "$dst" "$dst.old"
  mv "$src" "$dst"
  rm -rf "$dst.old"
}
