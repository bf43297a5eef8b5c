// Package k8s exists so that this wrapper module has a package; the binaries are built with
// `go build k8s.io/kubernetes/cmd/<name>` from this directory (see hack/build-k8s.sh).
package k8s
