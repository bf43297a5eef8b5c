// Package deploy ships what an operator applies to run the conformance suites without
// cluster-admin: runner-rbac.yaml, the ClusterRoles (and a ServiceAccount with bindings) that
// grant exactly the API calls a run makes. `make runner-kubeconfig KUBECONFIG=F` writes a
// kubeconfig bound to them only (hack/runner-kubeconfig.sh).
package deploy

import _ "embed"

// RunnerRole is the ClusterRole of the runner.
const RunnerRole = "keysync-conformance-runner"

// RunnerRBAC is runner-rbac.yaml.
//
//go:embed runner-rbac.yaml
var RunnerRBAC []byte
