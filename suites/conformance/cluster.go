package conformance

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
)

// requireCluster skips (naming the capability and the labs that have it) where the lab has no
// Kubernetes cluster whose nodes run the synchronizer addon.
func (c *Context) requireCluster(t T) {
	t.Helper()
	c.require(t, lab.CapCluster)
}

// schedulable reports whether the DaemonSet's pods may run on node.
func schedulable(node corev1.Node, tolerations []corev1.Toleration) bool {
	if node.Spec.Unschedulable {
		return false
	}
	for _, taint := range node.Spec.Taints {
		if taint.Effect != corev1.TaintEffectNoSchedule && taint.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !slices.ContainsFunc(tolerations, func(tol corev1.Toleration) bool { return tolerates(tol, taint) }) {
			return false
		}
	}
	return true
}

// tolerates is the scheduler's toleration match (operators Exists and Equal).
func tolerates(tol corev1.Toleration, taint corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != taint.Effect {
		return false
	}
	if tol.Key != "" && tol.Key != taint.Key {
		return false
	}
	switch tol.Operator {
	case corev1.TolerationOpExists:
		return true
	case corev1.TolerationOpEqual, "":
		return tol.Key != "" && tol.Value == taint.Value
	}
	return false
}

func podReady(p corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// addonPods returns the DaemonSet, the schedulable nodes and the ready addon pod per node.
func (c *Context) addonPods(ctx context.Context) (*appsv1.DaemonSet, []string, map[string]corev1.Pod, error) {
	ds, err := c.Client.AppsV1().DaemonSets(names.Namespace).Get(ctx, names.Addon, metav1.GetOptions{})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("failed to get DaemonSet %s/%s: %w", names.Namespace, names.Addon, err)
	}
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("failed to list nodes: %w", err)
	}
	var want []string
	for _, n := range nodes.Items {
		if schedulable(n, ds.Spec.Template.Spec.Tolerations) {
			want = append(want, n.Name)
		}
	}
	slices.Sort(want)
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("failed to parse DaemonSet %s's selector: %w", names.Addon, err)
	}
	pods, err := c.Client.CoreV1().Pods(names.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("failed to list addon pods: %w", err)
	}
	ready := map[string]corev1.Pod{}
	for _, p := range pods.Items {
		if podReady(p) && metav1.IsControlledBy(&p, ds) {
			ready[p.Spec.NodeName] = p
		}
	}
	return ds, want, ready, nil
}

// waitAddonPods waits until every schedulable node has exactly one ready addon pod (and the
// DaemonSet counts as many), none of them with a UID in old.
func (c *Context) waitAddonPods(ctx context.Context, old map[types.UID]bool) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, c.pollInterval(), 2*c.syncTimeout(), true, func(ctx context.Context) (bool, error) {
		ds, want, ready, err := c.addonPods(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		var missing []string
		for _, n := range want {
			if p, ok := ready[n]; !ok || old[p.UID] {
				missing = append(missing, n)
			}
		}
		extra := len(ready) - (len(want) - len(missing))
		last = fmt.Sprintf("schedulable nodes %v, nodes without a (new) ready pod %v, ready pods elsewhere %d, DaemonSet numberReady %d",
			want, missing, extra, ds.Status.NumberReady)
		return len(missing) == 0 && extra == 0 && int(ds.Status.NumberReady) == len(want), nil
	})
	if err != nil {
		return fmt.Errorf("addon pods != schedulable nodes after %s (%s): %w", 2*c.syncTimeout(), last, err)
	}
	return nil
}
