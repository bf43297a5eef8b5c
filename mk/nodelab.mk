# Node lab (lab/, lab/nodelab/): a Docker-free lab on loopback — registry, etcd, kube-apiserver,
# mockkp, CRI-O and the syncer as host processes under one work dir. Also the pieces the kind
# lab shares: CRI-O + crictl builds and the OCI runtime wrapper.
.PHONY: crio runtime-wrapper

crio: deps ## build (or reuse) CRI-O, pinns and crictl into the cache; prints the bin dir
	@hack/build-crio.sh

runtime-wrapper: ## build the static OCI runtime wrapper (hosts lacking CAP_SYS_RESOURCE) into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/keysync-runtime-wrapper ./cmd/keysync-runtime-wrapper
