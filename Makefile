# keysync — the developer entry points. Versions come from versions.env (the one pin file).
include versions.env
export

SHELL := /bin/bash
GO ?= go
# Built binaries and images live in a per-user cache that survives fresh clones (CI).
KEYSYNC_CACHE ?= $(HOME)/.cache/keysync
export KEYSYNC_CACHE
BIN := bin
# Static binaries everywhere. containers/image (fixtures/) links gpgme through cgo unless its
# pure-Go OpenPGP backend is chosen, so every build, vet and test carries that tag.
export CGO_ENABLED ?= 0
export GOFLAGS := $(strip $(GOFLAGS) -tags=containers_image_openpgp)
# Every package but the conformance features (package ./suites, which needs a running lab:
# make conformance); the suites' helper packages under suites/ are unit-tested here.
UNIT_PKGS = $$($(GO) list ./... | grep -vx 'github.com/keysync-dev/keysync/suites')

# Each area adds its targets in mk/<area>.mk (mockkp.mk, syncer.mk, fixtures.mk, nodelab.mk,
# suites.mk, kindlab.mk) so the areas never edit one file at once.
.DEFAULT_GOAL := help
include $(sort $(wildcard mk/*.mk))

.PHONY: help build test lint bench deps k8s-bins clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

deps: ## install the Debian packages and Go tools the tests and labs need (root, idempotent)
	hack/install-deps.sh

build: ## build every binary into bin/
	$(GO) build -trimpath -o $(BIN)/ ./cmd/...

k8s-bins: ## build (or reuse) kube-apiserver and etcd for the integration tests
	@hack/build-k8s.sh kube-apiserver >/dev/null

test: k8s-bins ## unit and integration tests (real kube-apiserver + etcd, real registry, mockkp)
	KEYSYNC_K8S_BIN=$$(hack/build-k8s.sh kube-apiserver) $(GO) test -count=1 $(UNIT_PKGS)

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^tools/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: k8s-bins ## benchmarks; results in bench-results.txt
	KEYSYNC_K8S_BIN=$$(hack/build-k8s.sh kube-apiserver) $(GO) test -run '^$$' -bench . -benchmem -count=1 $(UNIT_PKGS) | tee bench-results.txt

clean: ## remove build output in the checkout (the cache in $(KEYSYNC_CACHE) stays)
	rm -rf $(BIN) bench-results.txt
