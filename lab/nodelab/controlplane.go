package nodelab

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/kubetest"
)

// controlPlane is etcd + kube-apiserver on loopback (internal/kubetest), children of the
// supervisor; etcd's data stays in the layout's control-plane dir across ups.
type controlPlane struct {
	srv *kubetest.Server
}

// startControlPlane starts etcd and kube-apiserver from binDir.
func startControlPlane(ctx context.Context, l Layout, binDir string, log *slog.Logger) (*controlPlane, error) {
	srv, err := kubetest.Start(ctx, kubetest.Options{BinDir: binDir, Dir: l.ControlPlaneDir()})
	if err != nil {
		return nil, fmt.Errorf("failed to start etcd and kube-apiserver (logs %s/{etcd,kube-apiserver}.log): %w",
			l.ControlPlaneDir(), err)
	}
	log.Debug("control plane ready", "url", srv.URL)
	return &controlPlane{srv: srv}, nil
}

// Kubeconfig is an admin kubeconfig for the API server.
func (c *controlPlane) Kubeconfig() ([]byte, error) {
	data, err := os.ReadFile(c.srv.KubeconfigPath)
	if err != nil {
		return nil, fmt.Errorf("failed to read the control plane's kubeconfig: %w", err)
	}
	return data, nil
}

// Host is the API server's URL.
func (c *controlPlane) Host() string { return c.srv.URL }

// EnsureNamespace creates ns unless it exists.
func (c *controlPlane) EnsureNamespace(ctx context.Context, ns string) error {
	client, err := c.srv.Client()
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to create namespace %s: %w", ns, err)
	}
	return nil
}

// Stop stops kube-apiserver and etcd.
func (c *controlPlane) Stop() error {
	c.srv.Stop()
	return nil
}
