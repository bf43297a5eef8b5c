# Mutants (internal/mutants, cmd/keysync-mutants): the suite against deliberately broken variants
# of the reference synchronizer (built with -tags keysync_mutants; the shipped binary has no
# mutant code) on the node lab: one lab, only the synchronizer swapped between mutants.
.PHONY: mutants

MUTANTS ?=

mutants: node-lab-up ## run the suite against every mutant on the node lab; table + "mutants: K/N killed" (fails unless all are killed)
	@$(GO) build -trimpath -tags containers_image_openpgp,keysync_mutants -o $(BIN)/keysync-syncer-mutants ./cmd/keysync-syncer && \
	  $(GO) build -trimpath -o $(BIN)/keysync-mutants ./cmd/keysync-mutants && \
	  crio=$$(hack/build-crio.sh) && k8s=$$(hack/build-k8s.sh kube-apiserver) && \
	  $(BIN)/keysync-mutants --mutant-bin $(BIN)/keysync-syncer-mutants --lab-env $(LAB_ENV) --go-test "$(GO) test" \
	    --up "$(BIN)/keysync lab up $(NODE_LAB_FLAGS) --crio-bin-dir $$crio --k8s-bin-dir $$k8s" \
	    $(if $(MUTANTS),--only $(MUTANTS))
