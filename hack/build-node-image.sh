#!/usr/bin/env bash
# Builds (or reuses) the keysync kind node image offline and prints its tag:
#   keysync/kind-node:<kubernetes version>-<input hash>
# Inputs, all local: a Debian rootfs from mmdebstrap (the host's apt sources), kind's base files
# from the module cache, Kubernetes node binaries (hack/build-k8s.sh), CRI-O + pinns + crictl
# (hack/build-crio.sh), keysync-runtime-wrapper, lab/kindlab/nodeimage/, and the configuration every
# lab shares (lab/labconfig: CRI-O's drop-in, registries.conf, policy.json), rendered for the kind
# nodes by hack/render-labconfig into the build context's files/. The control-plane images
# kubeadm needs are built FROM scratch (kube-proxy on the Debian base: it runs iptables) and
# preloaded into CRI-O's storage AT BUILD TIME (skopeo in a privileged build container, the store
# added to the image as a layer), so nodes never resolve a registry for them. CoreDNS is not
# built: the lab skips kubeadm's addon/coredns phase.
#   hack/build-node-image.sh            build if needed, print the tag
#   hack/build-node-image.sh --base     only the Debian base image (no Kubernetes/CRI-O needed)
. "$(dirname "$0")/lib.sh"

ctxsrc=$KEYSYNC_ROOT/lab/kindlab/nodeimage
pkgs=$(sed -e 's/#.*//' -e '/^\s*$/d' "$ctxsrc/packages.txt" | awk '{print $1}' | paste -sd,)

# 1. the Debian base: mmdebstrap rootfs, imported. Keyed by the package list and the suite.
base_hash=$(echo "mmdebstrap --variant=minbase $DEBIAN_SUITE $pkgs" | sha256sum | cut -c1-12)
base_tag=keysync/kind-node-base:$DEBIAN_SUITE-$base_hash
if ! docker image inspect "$base_tag" >/dev/null 2>&1; then
  rootfs=$KEYSYNC_CACHE/kind-rootfs-$DEBIAN_SUITE-$base_hash.tar
  if [ ! -f "$rootfs" ] || [ ! -s "$rootfs" ]; then
    rm -rf "$rootfs" # a directory left by an older version of this script
    command -v mmdebstrap >/dev/null || { log "mmdebstrap is missing: run make deps"; exit 1; }
    log "building the Debian $DEBIAN_SUITE rootfs with mmdebstrap (~2-4 min)"
    # The format is explicit: mmdebstrap guesses it from the name, and "*.tar.tmp" would be a
    # directory. The temp name keeps the .tar suffix and the same filesystem for the rename.
    rm -rf "${rootfs%.tar}.tmp.tar"
    mmdebstrap --quiet --format=tar --variant=minbase --include="$pkgs" "$DEBIAN_SUITE" "${rootfs%.tar}.tmp.tar"
    mv "${rootfs%.tar}.tmp.tar" "$rootfs"
  fi
  log "importing $rootfs as $base_tag"
  docker import "$rootfs" "$base_tag" >/dev/null
fi
if [ "${1:-}" = --base ]; then echo "$base_tag"; exit 0; fi

# 2. the binaries (each script reuses its finished build and prints its bin dir).
k8sbin=$("$KEYSYNC_ROOT/hack/build-k8s.sh" kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
criobin=$("$KEYSYNC_ROOT/hack/build-crio.sh")
kinddir=$(cd "$KEYSYNC_CACHE" && go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir)
[ -d "$kinddir/images/base/files" ] || { log "failed to download kind $KIND_VERSION's base files"; exit 1; }

# 3. the node image, keyed by every input: the rendered lab configuration as it will be baked in.
rendered=$(mktemp -d "$KEYSYNC_CACHE/.kind-node-config.XXXXXX")
trap 'rm -rf "$rendered"' EXIT
(cd "$KEYSYNC_ROOT" && CGO_ENABLED=0 go run -tags=containers_image_openpgp ./hack/render-labconfig --pause-version "$PAUSE_VERSION" --out "$rendered") ||
  { log "failed to render the lab configuration (hack/render-labconfig)"; exit 1; }
hash=$( (
  (cd "$rendered" && find . -type f | LC_ALL=C sort | while read -r f; do
    echo "rendered/${f#./}"; cat "$f"
  done)
  cd "$KEYSYNC_ROOT"
  # Cache directories by their names (version + input hash), not where the cache lives.
  echo "$base_tag ${k8sbin#"$KEYSYNC_CACHE"/} ${criobin#"$KEYSYNC_CACHE"/} $KIND_VERSION"
  cat versions.env hack/build-node-image.sh
  # The wrapper's own packages, whatever they import from this module (go list -deps).
  wrapdirs=$(go list -deps -f '{{if not .Standard}}{{.Dir}}{{end}}' ./cmd/keysync-runtime-wrapper | sed "s|^$KEYSYNC_ROOT/||")
  # shellcheck disable=SC2086 # one directory per word
  find lab/kindlab/nodeimage $wrapdirs -type f | LC_ALL=C sort | while read -r f; do
    echo "$f"; cat "$f"
  done) | sha256sum | cut -c1-12)
tag=keysync/kind-node:$KUBERNETES_VERSION-$hash
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi

start=$(date +%s)
ctx=$(mktemp -d "$KEYSYNC_CACHE/.kind-node.XXXXXX")
cleanup() { rm -rf "$ctx" "$rendered"; docker rmi "keysync/kind-node-stage:$hash" >/dev/null 2>&1 || true; }
trap cleanup EXIT
mkdir -p "$ctx/bin" "$ctx/kind" "$ctx/images"
cp -r "$kinddir/images/base/files/." "$ctx/kind/"
chmod -R u+w "$ctx/kind"
cp -r "$ctxsrc/files" "$ctxsrc/Dockerfile" "$ctx/"
cp -r "$rendered/." "$ctx/files/"
for b in kubeadm kubelet kubectl; do cp "$k8sbin/$b" "$ctx/bin/"; done
for b in crio pinns crictl; do cp "$criobin/$b" "$ctx/bin/"; done
(cd "$KEYSYNC_ROOT" && CGO_ENABLED=0 go build -trimpath -o "$ctx/bin/keysync-runtime-wrapper" ./cmd/keysync-runtime-wrapper)
echo "$KUBERNETES_VERSION" >"$ctx/version"

# 3a. the control-plane images kubeadm will ask for (coredns skipped: addon/coredns phase).
mapfile -t want < <("$k8sbin/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" 2>/dev/null | grep -v /coredns)
[ ${#want[@]} -ge 6 ] || { log "failed to list kubeadm's images: got '${want[*]}'"; exit 1; }
build_image() { # build_image REF DIR
  local ref=$1 dir=$2
  DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base_tag" -t "$ref" "$dir" >/dev/null 2>"$dir.log" || { log "failed to build $ref: $(cat "$dir.log")"; exit 1; }
}
: >"$ctx/images/list"
for ref in "${want[@]}"; do
  name=${ref##*/}; name=${name%%:*}
  d=$ctx/img-$name
  mkdir -p "$d"
  case $name in
    pause)
      cp /usr/bin/catatonit "$d/catatonit"
      printf 'FROM scratch\nCOPY catatonit /catatonit\nENTRYPOINT ["/catatonit","-P"]\n' >"$d/Dockerfile" ;;
    etcd)
      cp "$k8sbin/etcd" "$d/etcd"
      printf 'FROM scratch\nENV PATH=/usr/local/bin\nCOPY etcd /usr/local/bin/etcd\nENTRYPOINT ["/usr/local/bin/etcd"]\n' >"$d/Dockerfile" ;;
    kube-proxy)
      cp "$k8sbin/kube-proxy" "$d/kube-proxy"
      cp "$ctxsrc/kube-proxy/Dockerfile" "$ctxsrc/kube-proxy/iptables-wrapper" "$d/" ;;
    kube-apiserver|kube-controller-manager|kube-scheduler)
      cp "$k8sbin/$name" "$d/$name"
      printf 'FROM scratch\nENV PATH=/usr/local/bin\nCOPY %s /usr/local/bin/%s\nENTRYPOINT ["/usr/local/bin/%s"]\n' "$name" "$name" "$name" >"$d/Dockerfile" ;;
    *) log "no recipe for kubeadm image $ref"; exit 1 ;;
  esac
  build_image "$ref" "$d"
  docker save -o "$ctx/images/$name.tar" "$ref"
  echo "$name $ref" >>"$ctx/images/list"
  rm -rf "$d"
done

# 3b. the node without images, then CRI-O's store filled by skopeo inside a privileged container
# (overlay on a tmpfs: overlay cannot nest on the image's own overlay root), exported as a tar.
log "building the kind node stage image"
DOCKER_BUILDKIT=0 docker build -q --target node --build-arg "BASE=$base_tag" -t "keysync/kind-node-stage:$hash" "$ctx" >/dev/null
log "preloading ${#want[@]} control-plane images into CRI-O's storage"
docker run --rm --privileged --network none --tmpfs /var/lib/containers:rw,exec,size=4g \
  -v "$ctx/images:/images:ro" --entrypoint /bin/bash "keysync/kind-node-stage:$hash" -euc '
    while read -r name ref; do
      skopeo --insecure-policy copy -q "docker-archive:/images/$name.tar" "containers-storage:$ref" >&2
    done </images/list
    tar -C /var/lib/containers -cf - storage' >"$ctx/storage.tar"
rm -rf "$ctx/images"
log "building $tag"
DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base_tag" -t "$tag" "$ctx" >/dev/null
log "built $tag in $(( $(date +%s) - start )) s"
# Older node images of this checkout: remove those no container uses (docker refuses the others).
for old in $(docker images --format '{{.Repository}}:{{.Tag}}' keysync/kind-node); do
  [ "$old" = "$tag" ] || docker rmi "$old" >/dev/null 2>&1 || true
done
echo "$tag"
