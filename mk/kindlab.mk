# Kind lab (lab/kindlab, hack/prepare-docker.sh, hack/build-node-image.sh): a real Kubernetes
# cluster (kind v0.33.0 through its Go API) on CRI-O nodes built offline, with a registry
# container, the fixtures, mockkp and the synchronizer addon; described for the suites by
# $(LAB_ENV). `make lab-up` prepares Docker where it must (root on Debian; says what it changes).
.PHONY: docker-prepare kind-node-image lab-up lab-down lab-status lab-add-worker lab-remove-worker kindlab-test

LAB_ENV ?= _out/lab.env
KIND_LAB_NAME ?= keysync
KIND_WORKERS ?= 1
# Steps of lab-up to leave out while their parts are missing: fixtures,mockkp,kms,syncer (kms needs mockkp).
KIND_LAB_SKIP ?=

docker-prepare: deps ## install/start dockerd; on hosts lacking CAP_SYS_RESOURCE make the runtime wrapper its default runtime
	@hack/prepare-docker.sh

kind-node-image: docker-prepare ## build (or reuse) the CRI-O kind node image; prints its tag
	@hack/build-node-image.sh

# SYNCHRONIZER=DIR deploys your synchronizer (a kustomize directory) instead of the reference;
# SYNCHRONIZER=none deploys none (deploy yours after lab-up).
lab-up: docker-prepare ## the kind lab: build/reuse the node image, create the cluster and addons; writes $(LAB_ENV)
	@img=$$(hack/build-node-image.sh) && k8s=$$(hack/build-k8s.sh kubectl) && \
	  $(GO) build -trimpath -o $(BIN)/keysync ./cmd/keysync && \
	  $(BIN)/keysync lab up --kind kind --name $(KIND_LAB_NAME) --image "$$img" --workers $(KIND_WORKERS) \
	    --kubectl "$$k8s/kubectl" --lab-env $(LAB_ENV) $(if $(KIND_LAB_SKIP),--skip $(KIND_LAB_SKIP)) \
	    $(if $(SYNCHRONIZER),--synchronizer '$(SYNCHRONIZER)')

lab-down: ## delete the kind lab (cluster, registry, mockkp, $(LAB_ENV))
	@$(GO) build -trimpath -o $(BIN)/keysync ./cmd/keysync && \
	  $(BIN)/keysync lab down --kind kind --name $(KIND_LAB_NAME) --lab-env $(LAB_ENV)

# make test includes the kind driver's and the registry image's tests, which need dockerd.
test: docker-prepare

kindlab-test: docker-prepare ## the kind lab's own tests (Docker needed: registry image, node driver)
	$(GO) test -count=1 ./lab/kindlab/... ./suites/nodedriver/kind/... ./suites/nodedriver/contract/...

lab-status: ## check every part of the kind lab; fails unless all are up
	@$(GO) build -trimpath -o $(BIN)/keysync ./cmd/keysync && \
	  $(BIN)/keysync lab status --kind kind --name $(KIND_LAB_NAME) --lab-env $(LAB_ENV)

lab-add-worker: ## add a worker node to the running kind lab: make lab-add-worker NODE=keysync-worker2
	@test -n "$(NODE)" || { echo "usage: make lab-add-worker NODE=<name>"; exit 1; }
	@$(GO) build -trimpath -o $(BIN)/keysync ./cmd/keysync && \
	  $(BIN)/keysync lab add-node --kind kind --name $(KIND_LAB_NAME) --lab-env $(LAB_ENV) $(NODE)

lab-remove-worker: ## remove a worker node from the running kind lab: make lab-remove-worker NODE=keysync-worker2
	@test -n "$(NODE)" || { echo "usage: make lab-remove-worker NODE=<name>"; exit 1; }
	@$(GO) build -trimpath -o $(BIN)/keysync ./cmd/keysync && \
	  $(BIN)/keysync lab remove-node --kind kind --name $(KIND_LAB_NAME) --lab-env $(LAB_ENV) $(NODE)
