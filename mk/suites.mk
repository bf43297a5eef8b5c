# Suites (suites/): the conformance features as a library (suites/conformance), their
# `go test` entry point (package ./suites, sigs.k8s.io/e2e-framework) and `keysync conformance`.
# `make conformance` runs `go test ./suites` against the current lab ($(LAB_ENV)), writes
# JUnit to _out/junit.xml and the HTML report to $(REPORT_HTML), and prints the per-profile
# line ("required: N passed, N failed, N skipped; recommended: N passed, N warned, ...") then
# "N passed, N failed, N skipped" (", N warned"), counting conformance checks only. Without a
# lab it fails and says how to start one (make node-lab-up). It needs no Kubernetes binaries;
# the suites' helper packages (suites/conformance, suites/internal/..., suites/nodedriver/...)
# are unit-tested by make test.
#   make conformance SUITE_ARGS="--labels area=kp"      # select (e2e-framework flags)
#   make conformance SUITE_ARGS="--skip-features rotat"
#   make conformance SUITE_ARGS="--profile required"    # failed recommended checks only warn
# Interrupt-safe: Ctrl-C, SIGTERM (to make: the recipe passes it on to go test, whose test binary
# then cleans up as an orphan) and the end of CONFORMANCE_TIMEOUT remove what the run created
# (suites/conformance/interrupt.go); after a SIGKILL run `keysync conformance cleanup`.
LAB_ENV ?= _out/lab.env
SUITE_ARGS ?=
CONFORMANCE_TIMEOUT ?= 30m
REPORT_HTML ?= _out/report.html

.PHONY: conformance conformance-rejudge suites-unit

conformance: ## run the conformance suites against the current lab ($(LAB_ENV)); JUnit in _out/junit.xml
	@mkdir -p _out
	@rc=0; KEYSYNC_LAB_ENV=$(abspath $(LAB_ENV)) KEYSYNC_SUITE_ARGS="$(SUITE_ARGS)" \
	  $(GO) test -count=1 -json -timeout $(CONFORMANCE_TIMEOUT) ./suites > _out/suites.json & pid=$$!; \
	  trap 'kill -TERM $$pid 2>/dev/null' TERM HUP; trap : INT; \
	  wait $$pid; rc=$$?; while kill -0 $$pid 2>/dev/null; do wait $$pid; rc=$$?; done; \
	  $(GO) run ./cmd/keysync conformance report --go-test-json _out/suites.json --junit _out/junit.xml --html $(REPORT_HTML) || rc=1; \
	  exit $$rc

# Both profiles run the same checks (a failed recommended check stops nothing under either), so
# one run yields both verdicts: judge the last run again under PROFILE.
PROFILE ?= required
conformance-rejudge: ## judge the last conformance run (_out/suites.json) under PROFILE=required|recommended; JUnit in _out/junit-$(PROFILE).xml
	@$(GO) run ./cmd/keysync conformance report --go-test-json _out/suites.json --profile $(PROFILE) --junit _out/junit-$(PROFILE).xml

# The suites' own tests (JUnit writer, hooks, tracker, Secret client and Event waiter against a
# real kube-apiserver, ...) need no lab: make test runs them (UNIT_PKGS); this target runs
# only them.
suites-unit: k8s-bins ## the suites' helper packages' tests (no lab needed; real kube-apiserver + etcd)
	KEYSYNC_K8S_BIN=$$(hack/build-k8s.sh kube-apiserver) $(GO) test -count=1 $$($(GO) list ./suites/... | grep -vx 'github.com/keysync-dev/keysync/suites')

# Any cluster (its nodes run CRI-O, the synchronizer under test is deployed): `keysync lab up
# --kind cluster` pushes the fixtures and the node agent image to a registry the nodes pull
# from and writes $(CLUSTER_ENV); `make conformance LAB_ENV=$(CLUSTER_ENV)` then runs the suites
# through the agent pods (suites/nodedriver/cluster).
CLUSTER_ENV ?= _out/cluster.env
INIT_ARGS ?=
.PHONY: cluster-init
cluster-init: build ## prepare a conformance run on any cluster: make cluster-init KUBECONFIG=<file> REGISTRY=<host:port> [INIT_ARGS=...]
	@test -n "$(REGISTRY)" -a -n "$(KUBECONFIG)" || { echo "usage: make cluster-init KUBECONFIG=<file> REGISTRY=<host:port> [INIT_ARGS=\"--authfile auth.json\"]"; exit 1; }
	@$(BIN)/keysync lab up --kind cluster --kubeconfig "$(KUBECONFIG)" --registry "$(REGISTRY)" --lab-env $(CLUSTER_ENV) $(INIT_ARGS)

# A kubeconfig bound to the runner's roles only (suites/deploy/runner-rbac.yaml): applies them
# with the admin KUBECONFIG and issues the ServiceAccount a token (TokenRequest API). Run the
# suites with it: make conformance LAB_ENV=$(CLUSTER_ENV) with KEYSYNC_KUBECONFIG=$(RUNNER_KUBECONFIG).
RUNNER_KUBECONFIG ?= _out/runner.kubeconfig
.PHONY: runner-kubeconfig
runner-kubeconfig: ## write $(RUNNER_KUBECONFIG) bound to the conformance runner's ClusterRole only: make runner-kubeconfig KUBECONFIG=<admin kubeconfig>
	@test -n "$(KUBECONFIG)" || { echo "usage: make runner-kubeconfig KUBECONFIG=<admin kubeconfig>"; exit 1; }
	@k8s=$$(hack/build-k8s.sh kubectl) && KUBECTL="$$k8s/kubectl" hack/runner-kubeconfig.sh "$(KUBECONFIG)" $(RUNNER_KUBECONFIG)
