// Package fleetbench holds the fleet-scale benchmark of the reference synchronizer (its
// _test.go files only): many synchronizers, each built from syncer/controller and
// syncer/keyfile exactly as syncer/app builds one, each with its own keys directory and node
// name, run in one process against one real kube-apiserver (internal/kubetest) and one
// rate-limited mockkp (mockkp/mockkptest). Every node unwraps independently by design, so Key
// Protect's rate limit is the fleet's ceiling; the benchmark measures how a fleet converges
// under it:
//
//	KEYSYNC_K8S_BIN=$(hack/build-k8s.sh kube-apiserver) \
//	  go test -run '^$' -bench Fleet -benchtime 1x ./syncer/fleetbench/ [-args -fleet-size=1000 -unwrap-rate=100]
package fleetbench
