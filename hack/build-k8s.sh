#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries (and etcd) from the Go module proxy into the cache and
# prints the bin directory. Reuses a finished build keyed by version and input hash.
#   hack/build-k8s.sh [name...]   (default: every binary the labs use)
. "$(dirname "$0")/lib.sh"

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl)
hash=$(input_hash versions.env tools/k8s/go.mod tools/etcd/go.mod tools/etcd/main.go hack/build-k8s.sh)
out=$KEYSYNC_CACHE/k8s-$KUBERNETES_VERSION-$hash
missing=()
for n in "${names[@]}" etcd; do [ -x "$out/bin/$n" ] || missing+=("$n"); done
if [ ${#missing[@]} -eq 0 ]; then echo "$out/bin"; exit 0; fi

mkdir -p "$out/bin"
export CGO_ENABLED=0
kv=${KUBERNETES_VERSION#v}
major=${kv%%.*}; rest=${kv#*.}; minor=${rest%%.*}
date=$(date -u -d @0 +%Y-%m-%dT%H:%M:%SZ)
x=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  x+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  x+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean -X $p.buildDate=$date"
done
k8s=()
for n in "${missing[@]}"; do [ "$n" = etcd ] || k8s+=("k8s.io/kubernetes/cmd/$n"); done
if [ ${#k8s[@]} -gt 0 ]; then
  log "building Kubernetes $KUBERNETES_VERSION: ${missing[*]} (10-30 min on 2 cores when cold)"
  (cd "$KEYSYNC_ROOT/tools/k8s" && go build -mod=mod -trimpath -tags selinux,notest,grpcnotrace \
      -ldflags "all=$x -s -w" -o "$out/bin/" "${k8s[@]}")
fi
if [ ! -x "$out/bin/etcd" ]; then
  log "building etcd $ETCD_VERSION"
  (cd "$KEYSYNC_ROOT/tools/etcd" && go build -mod=mod -trimpath \
      -ldflags "-X go.etcd.io/etcd/api/v3/version.GitSHA=keysync -s -w" -o "$out/bin/etcd" .)
fi
echo "$out/bin"
