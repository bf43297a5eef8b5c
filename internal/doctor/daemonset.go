package doctor

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/names"
)

func getDaemonSet(ctx context.Context, e *Env) (*appsv1.DaemonSet, error) {
	return e.Client.AppsV1().DaemonSets(e.Namespace).Get(ctx, names.Addon, metav1.GetOptions{})
}

func checkDaemonSet(ctx context.Context, e *Env) []Result {
	what := "DaemonSet " + e.Namespace + "/" + names.Addon
	ds, err := getDaemonSet(ctx, e)
	if err != nil {
		return []Result{apiFail("", what, err, deployFix("daemonset.yaml"))}
	}
	sa := ds.Spec.Template.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if sa != names.Addon {
		return []Result{fail("", fmt.Sprintf("%s runs its pods as ServiceAccount %s, not %s (the one the RoleBinding binds)", what, sa, names.Addon),
			"set spec.template.spec.serviceAccountName: "+names.Addon)}
	}
	var images []string
	for _, c := range ds.Spec.Template.Spec.Containers {
		images = append(images, c.Image)
	}
	found := fmt.Sprintf("%s exists (image %s, ServiceAccount %s)", what, strings.Join(images, ", "), sa)
	if ds.Status.ObservedGeneration > 0 {
		found += fmt.Sprintf("; status: %d desired, %d scheduled, %d ready", ds.Status.DesiredNumberScheduled,
			ds.Status.CurrentNumberScheduled, ds.Status.NumberReady)
	}
	return []Result{ok("", found)}
}

// checkPods wants one Running and Ready synchronizer pod on every schedulable node, and for
// every node without one says why.
func checkPods(ctx context.Context, e *Env) []Result {
	ds, err := getDaemonSet(ctx, e)
	if err != nil {
		r := apiFail("", "DaemonSet "+e.Namespace+"/"+names.Addon, err, deployFix("daemonset.yaml"))
		r.Found += ": no synchronizer pods can run"
		return []Result{r}
	}
	nodes, err := e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return []Result{apiFail("", "nodes", err, "")}
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return []Result{fail("", fmt.Sprintf("the DaemonSet's selector is invalid: %v", err), "fix spec.selector")}
	}
	pods, err := e.Client.CoreV1().Pods(e.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return []Result{apiFail("", "pods in "+e.Namespace, err, "")}
	}
	byNode := map[string][]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		if n := podNode(p); n != "" {
			byNode[n] = append(byNode[n], p)
		}
	}
	sort.Slice(nodes.Items, func(i, j int) bool { return nodes.Items[i].Name < nodes.Items[j].Name })

	var out []Result
	schedulable, healthy := 0, 0
	for i := range nodes.Items {
		node := &nodes.Items[i]
		if node.Spec.Unschedulable {
			if len(byNode[node.Name]) == 0 {
				out = append(out, warn("node "+node.Name, "node is cordoned and has no synchronizer pod",
					"uncordon it before running encrypted images there"))
			}
			continue
		}
		schedulable++
		ps := byNode[node.Name]
		if len(ps) == 0 {
			out = append(out, whyNoPod(ctx, e, ds, node))
			continue
		}
		best := ps[0]
		for _, p := range ps {
			if podReady(p) {
				best = p
			}
		}
		if podReady(best) {
			healthy++
			continue
		}
		out = append(out, diagnosePod(ctx, e, best, node))
	}
	switch {
	case schedulable == 0:
		out = append(out, fail("", "the cluster has no schedulable node", "add or uncordon nodes"))
	case healthy == schedulable:
		out = append([]Result{ok("", fmt.Sprintf("%d/%d schedulable nodes run a Running and Ready synchronizer pod", healthy, schedulable))}, out...)
	default:
		out = append([]Result{fail("", fmt.Sprintf("only %d/%d schedulable nodes run a Running and Ready synchronizer pod", healthy, schedulable),
			"see the lines for each node below")}, out...)
	}
	return out
}

// podNode is the node a pod runs on or, for a DaemonSet pod not scheduled yet, the node its
// required node affinity targets (the DaemonSet controller pins each pod with matchFields).
func podNode(p *corev1.Pod) string {
	if p.Spec.NodeName != "" {
		return p.Spec.NodeName
	}
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, f := range t.MatchFields {
			if f.Key == "metadata.name" && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) == 1 {
				return f.Values[0]
			}
		}
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
