package doctor

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
)

// DefaultCleanupTimeout bounds the wait for doctor's node agent to be gone.
const DefaultCleanupTimeout = 2 * time.Minute

// WaitAgentGone waits, up to timeout, until doctor's node agent is gone: its namespace
// AgentNamespace deleted (finalized, not just Terminating) when keysync created it (labelled
// managed-by keysync), or else its DaemonSet deleted from the namespace that was there before.
// Its error says what is left and how to remove it.
func WaitAgentGone(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultCleanupTimeout
	}
	var last string
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		left, err := agentLeft(ctx, cs)
		if err != nil {
			lastErr = err // an API hiccup (or the deadline): try again until the timeout
			return false, nil
		}
		last = left
		return left == "", nil
	})
	if err != nil {
		switch {
		case last == "" && lastErr != nil:
			last = lastErr.Error()
		case last == "":
			last = "not read: " + err.Error()
		}
		return fmt.Errorf("doctor's node agent not gone within %s (%s): it may still go away by itself (kubectl get ns %s); "+
			"`keysync conformance cleanup` removes it: %w", timeout, last, AgentNamespace, err)
	}
	return nil
}

// agentLeft says what is left of doctor's node agent ("" when nothing).
func agentLeft(ctx context.Context, cs kubernetes.Interface) (string, error) {
	ns, err := cs.CoreV1().Namespaces().Get(ctx, AgentNamespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("failed to get namespace %s: %w", AgentNamespace, err)
	}
	if ns.Labels[names.LabelManagedBy] == names.ManagedBy {
		return namespaceLeft(ctx, cs, ns), nil
	}
	// Not keysync's namespace: doctor removed only its DaemonSet from it.
	_, err = cs.AppsV1().DaemonSets(AgentNamespace).Get(ctx, cluster.AgentName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("failed to get DaemonSet %s/%s: %w", AgentNamespace, cluster.AgentName, err)
	}
	return fmt.Sprintf("DaemonSet %s/%s still there", AgentNamespace, cluster.AgentName), nil
}

// namespaceLeft describes keysync's agent namespace that is still there: its phase, the pods
// still in it, and what its deletion waits for.
func namespaceLeft(ctx context.Context, cs kubernetes.Interface, ns *corev1.Namespace) string {
	parts := []string{fmt.Sprintf("namespace %s still there, phase %s", ns.Name, ns.Status.Phase)}
	if ns.DeletionTimestamp == nil {
		parts[0] += ", not being deleted"
	}
	if pods, err := cs.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{}); err == nil && len(pods.Items) > 0 {
		parts = append(parts, fmt.Sprintf("%d pod(s) in it", len(pods.Items)))
	}
	for _, c := range ns.Status.Conditions {
		if c.Status == corev1.ConditionTrue && c.Message != "" {
			parts = append(parts, string(c.Type)+": "+c.Message)
		}
	}
	if len(ns.Spec.Finalizers) > 0 {
		fs := make([]string, 0, len(ns.Spec.Finalizers))
		for _, f := range ns.Spec.Finalizers {
			fs = append(fs, string(f))
		}
		parts = append(parts, "finalizers "+strings.Join(fs, ", "))
	}
	return strings.Join(parts, "; ")
}
