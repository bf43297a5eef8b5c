package cluster

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// agentPod waits (up to ReadyTimeout: a node that just joined) for node's ready agent pod.
func (d *Driver) agentPod(ctx context.Context, node string) (string, error) {
	var name string
	err := wait.PollUntilContextTimeout(ctx, time.Second, d.opts.ReadyTimeout, true, func(ctx context.Context) (bool, error) {
		ds, err := d.opts.Client.AppsV1().DaemonSets(d.opts.Namespace).Get(ctx, AgentName, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("failed to get DaemonSet %s/%s: %w", d.opts.Namespace, AgentName, err)
		}
		pods, err := d.currentPods(ctx, ds, node)
		if err != nil {
			return false, err
		}
		for _, p := range pods {
			if podReady(p) {
				name = p.Name
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("no ready %s pod on node %s: %w", AgentName, node, err)
	}
	return name, nil
}

// streamExec runs command in the agent container of pod through the API server's exec
// subresource; a non-zero exit status comes back as a utilexec.ExitError.
func (d *Driver) streamExec(ctx context.Context, pod string, command []string, stdout, stderr io.Writer) error {
	return d.streamExecStdin(ctx, pod, command, nil, stdout, stderr)
}

// streamExecStdin is streamExec with stdin (nil: none).
func (d *Driver) streamExecStdin(ctx context.Context, pod string, command []string, stdin io.Reader, stdout, stderr io.Writer) error {
	req := d.opts.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(d.opts.Namespace).
		Name(pod).SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: "agent", Command: command, Stdin: stdin != nil, Stdout: true, Stderr: true,
	}, scheme.ParameterCodec)
	ex, err := executor(d.opts.Config, req.URL())
	if err != nil {
		return err
	}
	return ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

// executor execs over WebSocket, falling back to SPDY where the upgrade fails (as kubectl).
func executor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		return nil, err
	}
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}
