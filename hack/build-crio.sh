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

# Download both modules first, so a refused download fails before the long build.
crio_src=$(module_dir "github.com/cri-o/cri-o@$CRIO_VERSION")
crictl_src=$(GONOSUMDB=sigs.k8s.io/cri-tools module_dir "sigs.k8s.io/cri-tools@$CRICTL_VERSION")

log "building CRI-O $CRIO_VERSION + pinns (~5 min on 2 idle cores)"
cp -r "$crio_src" "$work/cri-o"
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

# Built from a copy of the module, like CRI-O: `go install pkg@version` also asks the proxy for
# the module's version list (deprecation check), which is refused for cri-tools.
log "building crictl $CRICTL_VERSION"
cp -r "$crictl_src" "$work/cri-tools"
chmod -R u+w "$work/cri-tools"
(
  cd "$work/cri-tools"
  GONOSUMDB=sigs.k8s.io/cri-tools CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    -o "$work/out/bin/crictl" ./cmd/crictl
)

"$work/out/bin/crio" --version >/dev/null
publish "$work/out" "$out"
echo "$out/bin"
