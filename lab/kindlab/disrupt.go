package kindlab

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
)

var _ lab.Disrupter = (*Lab)(nil)

// disruptTimeout bounds the wait for what a disruption broke to be back.
const disruptTimeout = 3 * time.Minute

// KillSyncer implements lab.Disrupter: the synchronizer's pods deleted with grace period 0
// (the kubelet kills their containers with SIGKILL), then a wait until the DaemonSet's new
// pods are ready on every node.
func (l *Lab) KillSyncer(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, disruptTimeout)
	defer cancel()
	if err := l.loadEnv(); err != nil {
		return err
	}
	if _, err := l.adminKubectl(ctx, "-n", SyncerNamespace, "delete", "pods", "-l", "app.kubernetes.io/name="+names.Addon,
		"--grace-period=0", "--force", "--wait=false"); err != nil {
		return fmt.Errorf("failed to kill the synchronizer pods: %w", err)
	}
	fmt.Fprintln(out, "deleted the synchronizer pods with grace period 0")
	time.Sleep(2 * time.Second) // let the DaemonSet notice before reading its status
	for {
		st, err := l.syncerReady(ctx)
		if err == nil && strings.Contains(st, fmt.Sprintf(" %d/%d ready", len(l.Env.Nodes), len(l.Env.Nodes))) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the synchronizer's pods are not ready again within %s: %v", disruptTimeout, err)
		case <-time.After(time.Second):
		}
	}
}

// RestartAPIServer implements lab.Disrupter: crictl stops kube-apiserver's container in the
// control-plane node (the kubelet starts the static pod again), then a wait for /readyz.
func (l *Lab) RestartAPIServer(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, disruptTimeout)
	defer cancel()
	id, err := docker(ctx, nil, "exec", l.controlPlane(), "crictl", "ps", "-q", "--name", "^kube-apiserver$")
	if err != nil || strings.TrimSpace(id) == "" {
		return fmt.Errorf("failed to find kube-apiserver's container: %v", err)
	}
	id = strings.Fields(id)[0]
	if _, err := docker(ctx, nil, "exec", l.controlPlane(), "crictl", "stop", id); err != nil {
		return fmt.Errorf("failed to stop kube-apiserver: %w", err)
	}
	fmt.Fprintf(out, "stopped kube-apiserver (container %.12s)\n", id)
	for {
		now, err := docker(ctx, nil, "exec", l.controlPlane(), "crictl", "ps", "-q", "--name", "^kube-apiserver$")
		if err == nil && strings.TrimSpace(now) != "" && !strings.Contains(now, id) {
			if _, err := l.adminKubectl(ctx, "get", "--raw", "/readyz"); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver did not serve again within %s", disruptTimeout)
		case <-time.After(time.Second):
		}
	}
}
