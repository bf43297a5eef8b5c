package nodelab

import (
	"context"
	"errors"
	"log/slog"
)

// controlPlane is etcd + kube-apiserver on loopback, children of the supervisor.
type controlPlane struct {
	kubeconfig []byte
	host       string
	stop       func() error
}

// startControlPlane starts etcd and kube-apiserver from binDir with their data and
// certificates under the layout's control-plane dir.
func startControlPlane(ctx context.Context, l Layout, binDir string, log *slog.Logger) (*controlPlane, error) {
	return nil, errors.New("failed to start the control plane: internal/kubetest has not landed yet")
}

// Kubeconfig is an admin kubeconfig for the API server.
func (c *controlPlane) Kubeconfig() []byte { return c.kubeconfig }

// Host is the API server's URL.
func (c *controlPlane) Host() string { return c.host }

// EnsureNamespace creates ns unless it exists.
func (c *controlPlane) EnsureNamespace(ctx context.Context, ns string) error { return nil }

// Stop stops kube-apiserver and etcd.
func (c *controlPlane) Stop() error { return c.stop() }
