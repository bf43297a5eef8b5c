# syncer: the reference Image Key Synchronizer (syncer/, cmd/keysync-syncer).
SYNCER_IMAGE ?= keysync-syncer:dev

.PHONY: syncer syncer-image syncer-test

syncer: ## build the static keysync-syncer binary into bin/
	$(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/keysync-syncer ./cmd/keysync-syncer

syncer-image: syncer ## build the syncer image FROM scratch (docker; no pulls) as $(SYNCER_IMAGE)
	ctx=$$(mktemp -d) && cp $(BIN)/keysync-syncer $$ctx/ && \
	  docker build -q -f syncer/Dockerfile -t $(SYNCER_IMAGE) $$ctx; rc=$$?; rm -rf $$ctx; exit $$rc

syncer-test: k8s-bins ## the syncer's unit and integration tests only
	KEYSYNC_K8S_BIN=$$(hack/build-k8s.sh kube-apiserver) $(GO) test -count=1 ./syncer/... ./internal/kubetest/...
