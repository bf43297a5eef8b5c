# Node lab (lab/, lab/nodelab/): a Docker-free lab on loopback — registry, etcd, kube-apiserver,
# mockkp, the KMS plug-in, CRI-O and the synchronizer as host processes under one work dir ($(NODE_LAB_DIR)),
# described for the suites by the env file $(LAB_ENV). Also the pieces the kind lab shares:
# the CRI-O + crictl build and the OCI runtime wrapper.
.PHONY: crio runtime-wrapper node-lab-bins node-lab-up node-lab-down node-lab-status

NODE_LAB_DIR ?= _out/node-lab
LAB_ENV ?= _out/lab.env
NODE_LAB_CMDS = ./cmd/keysync ./cmd/mockkp ./cmd/keysync-syncer ./cmd/keysync-runtime-wrapper ./cmd/keysync-kms-plugin
NODE_LAB_FLAGS = --kind node --work-dir $(NODE_LAB_DIR) --lab-env $(LAB_ENV) --bin-dir $(BIN)
# The keysync CLI links the fixtures package (containers/image): OpenPGP in Go, no gpgme/cgo.

crio: deps ## build (or reuse) CRI-O, pinns and crictl into the cache; prints the bin dir
	@hack/build-crio.sh

runtime-wrapper: ## build the static OCI runtime wrapper (hosts lacking CAP_SYS_RESOURCE) into bin/
	$(GO) build -trimpath -o $(BIN)/keysync-runtime-wrapper ./cmd/keysync-runtime-wrapper

node-lab-bins: ## build the binaries the node lab runs into bin/
	@$(GO) build -trimpath -o $(BIN)/ $(NODE_LAB_CMDS)

# SYNCHRONIZER='CMDLINE' runs your synchronizer instead of the reference ({kubeconfig}, {keys-dir},
# {staging-dir}, {namespace} and {node-name} are expanded); SYNCHRONIZER=none runs none.
node-lab-up: deps node-lab-bins ## start the node lab, or restart what is down in it; writes $(LAB_ENV) (root)
	@crio=$$(hack/build-crio.sh) && k8s=$$(hack/build-k8s.sh kube-apiserver) && \
	  $(BIN)/keysync lab up $(NODE_LAB_FLAGS) --crio-bin-dir "$$crio" --k8s-bin-dir "$$k8s" \
	    $(if $(SYNCHRONIZER),--synchronizer '$(SYNCHRONIZER)')

node-lab-down: ## stop the node lab's processes and unmount what CRI-O mounted (keeps caches)
	@[ -x $(BIN)/keysync ] || $(GO) build -trimpath -o $(BIN)/ ./cmd/keysync
	@$(BIN)/keysync lab down $(NODE_LAB_FLAGS)

node-lab-status: ## show the node lab's processes; fails unless every one runs and is healthy
	@$(BIN)/keysync lab status $(NODE_LAB_FLAGS)

# The node lab's integration test (lab/nodelab) runs in `make test` (as root) and needs CRI-O built;
# it builds its own binaries and runs a lab of its own in a temp dir on free ports.
test: crio
