#!/usr/bin/env bash
# Builds the pinned CRI-O ($CRIO_VERSION, with pinns) and crictl ($CRICTL_VERSION) from the Go
# module proxy into the cache and prints the bin directory:
#   $KEYSYNC_CACHE/crio-<version>-<input hash>/bin/{crio,pinns,crictl}
# Reuses a finished build. Needs gcc, make, pkg-config, libseccomp-dev and libgpgme-dev
# (hack/packages.txt, `make deps`). Cold: ~5 min on 2 idle cores. Used by both labs.
. "$(dirname "$0")/lib.sh"

hash=$(input_hash versions.env hack/build-crio.sh)
out=$KEYSYNC_CACHE/crio-$CRIO_VERSION-$hash
if [ -x "$out/bin/crio" ] && [ -x "$out/bin/pinns" ] && [ -x "$out/bin/crictl" ]; then
  echo "$out/bin"; exit 0
fi

work=$(mktemp -d "$KEYSYNC_CACHE/.crio-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/out/bin"

# module_dir MOD@VER downloads a module and prints its (read-only) directory in the module cache.
module_dir() {
  local dir
  dir=$(cd "$work" && go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] && [ -d "$dir" ] || { log "failed to download module $1"; return 1; }
  echo "$dir"
}

log "building CRI-O $CRIO_VERSION + pinns (~5 min on 2 idle cores)"
src=$(module_dir "github.com/cri-o/cri-o@$CRIO_VERSION")
cp -r "$src" "$work/cri-o"
chmod -R u+w "$work/cri-o"
(
  cd "$work/cri-o"
  # seccomp needs cgo (libseccomp); openpgp replaces gpgme, the stubs drop ostree and btrfs.
  CGO_ENABLED=1 go build -trimpath \
    -tags "containers_image_ostree_stub exclude_graphdriver_btrfs btrfs_noversion containers_image_openpgp seccomp" \
    -ldflags "-s -w -X github.com/cri-o/cri-o/internal/version.buildDate=1970-01-01T00:00:00Z" \
    -o "$work/out/bin/crio" ./cmd/crio
  make -s -C pinns >/dev/null
  cp bin/pinns "$work/out/bin/pinns"
)

log "building crictl $CRICTL_VERSION"
GOBIN="$work/out/bin" GONOSUMDB=sigs.k8s.io/cri-tools CGO_ENABLED=0 \
  go install -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
  "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"

"$work/out/bin/crio" --version >/dev/null
publish "$work/out" "$out"
echo "$out/bin"
