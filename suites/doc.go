// Package suites is keysync's conformance run as `go test` types it: its test package
// (suites_test.go) runs every feature of package suites/conformance, area by area, with
// sigs.k8s.io/e2e-framework against the lab described by the lab env file.
//
//	go test ./suites                                   # the lab in $KEYSYNC_LAB_ENV or <checkout>/_out/lab.env
//	go test ./suites -args --lab-env _out/lab.env --labels area=kp
//	go test ./suites -run 'TestConformance/kp'
//
// It builds with no build tag and needs no Kubernetes binaries: the suites' own helper
// packages (suites/conformance, suites/internal/..., suites/nodedriver/...) hold their unit
// tests, which `make test` runs. Without a lab the run FAILS and says how to start one.
//
// Flags: --lab-env (else $KEYSYNC_LAB_ENV, else <checkout>/_out/lab.env), --kubeconfig
// (overrides the env file's), the node hooks of package nodedriver (--hook-pull-image, ...),
// --sync-timeout, --p99-sync-latency, --profile, and e2e-framework's own (--labels, --skip-labels, --feature,
// --skip-features, --assess, --fail-fast, ...). $KEYSYNC_SUITE_ARGS adds flags (make
// conformance passes SUITE_ARGS through it).
package suites
