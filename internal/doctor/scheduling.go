package doctor

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

const registryFix = "registry credentials: check imagePullSecrets (DaemonSet or ServiceAccount " +
	"addon-image-key-synchronizer) and that the image exists in the registry"

// reasons collects what keeps a pod off a node and what to do about each.
type reasons struct{ found, fixes []string }

func (r *reasons) add(found, fix string) {
	r.found = append(r.found, found)
	if fix != "" && !containsString(r.fixes, fix) {
		r.fixes = append(r.fixes, fix)
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// whyNoPod explains a schedulable node without a synchronizer pod.
func whyNoPod(ctx context.Context, e *Env, ds *appsv1.DaemonSet, node *corev1.Node) Result {
	var r reasons
	spec := &ds.Spec.Template.Spec
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			r.add(fmt.Sprintf("the node is not Ready (%s: %s)", orUnknown(c.Reason), clip(c.Message)),
				"fix the node first (kubelet, CRI-O): kubectl describe node "+node.Name)
		}
	}
	placement(spec, node, &r)
	resources(ctx, e, spec, node, &r)
	if len(r.found) == 0 {
		r.add("nothing in the DaemonSet or the node explains it",
			"check that kube-controller-manager runs, then `kubectl -n "+e.Namespace+" describe daemonset "+ds.Name+"`")
	}
	return fail("node "+node.Name, "no synchronizer pod: "+strings.Join(r.found, "; "), strings.Join(r.fixes, "; "))
}

// diagnosePod explains a synchronizer pod that is not Running and Ready.
func diagnosePod(ctx context.Context, e *Env, p *corev1.Pod, node *corev1.Node) Result {
	var r reasons
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, cs := range statuses {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName", "RegistryUnavailable":
			r.add(fmt.Sprintf("container %s cannot pull image %s (%s: %s)", cs.Name, cs.Image, w.Reason, clip(w.Message)), registryFix)
		case "CrashLoopBackOff":
			exit := ""
			if t := cs.LastTerminationState.Terminated; t != nil {
				exit = fmt.Sprintf(", last exit code %d", t.ExitCode)
			}
			r.add(fmt.Sprintf("container %s is crash-looping (%d restarts%s)", cs.Name, cs.RestartCount, exit),
				fmt.Sprintf("read its log: kubectl -n %s logs %s -c %s --previous", p.Namespace, p.Name, cs.Name))
		case "", "ContainerCreating", "PodInitializing":
		default:
			r.add(fmt.Sprintf("container %s is waiting: %s %s", cs.Name, w.Reason, clip(w.Message)),
				fmt.Sprintf("kubectl -n %s describe pod %s", p.Namespace, p.Name))
		}
	}
	if p.Spec.NodeName == "" {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				r.add("not scheduled: "+clip(c.Message), schedulingFix(c.Message))
			}
		}
		for _, msg := range podEventMessages(ctx, e, p, "FailedScheduling") {
			r.add("FailedScheduling: "+clip(msg), schedulingFix(msg))
		}
		placement(&p.Spec, node, &r)
	}
	if len(r.found) == 0 {
		switch p.Status.Phase {
		case corev1.PodRunning:
			r.add("Running but not Ready (its readiness probe fails)",
				fmt.Sprintf("read its log: kubectl -n %s logs %s", p.Namespace, p.Name))
		default:
			r.add(fmt.Sprintf("phase %s", orUnknown(string(p.Status.Phase))),
				fmt.Sprintf("kubectl -n %s describe pod %s", p.Namespace, p.Name))
		}
	}
	return fail("node "+node.Name, fmt.Sprintf("pod %s is not Running and Ready: %s", p.Name, strings.Join(r.found, "; ")), strings.Join(r.fixes, "; "))
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func schedulingFix(msg string) string {
	switch {
	case strings.Contains(msg, "Insufficient"):
		return "free resources on the node or lower the DaemonSet's resource requests"
	case strings.Contains(msg, "taint"):
		return "add a toleration for the node's taint to the DaemonSet (the runbook's DaemonSet tolerates every taint) or remove the taint"
	case strings.Contains(msg, "affinity") || strings.Contains(msg, "selector"):
		return "fix the DaemonSet's nodeSelector/affinity or the node's labels"
	default:
		return "kubectl describe the pod for the scheduler's full message"
	}
}

func podEventMessages(ctx context.Context, e *Env, p *corev1.Pod, reason string) []string {
	sel := fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": p.Name, "reason": reason}.AsSelector().String()
	list, err := e.Client.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil || len(list.Items) == 0 {
		return nil
	}
	sort.Slice(list.Items, func(i, j int) bool { return eventTime(&list.Items[i]).After(eventTime(&list.Items[j])) })
	return []string{list.Items[0].Message}
}

// daemonTolerations are the tolerations the DaemonSet controller adds to every pod it makes.
var daemonTolerations = []corev1.Toleration{
	{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: "node.kubernetes.io/disk-pressure", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: "node.kubernetes.io/memory-pressure", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: "node.kubernetes.io/pid-pressure", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: "node.kubernetes.io/unschedulable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
}

// placement adds the taints the pod spec does not tolerate and the nodeSelector or required
// node affinity the node does not match.
func placement(spec *corev1.PodSpec, node *corev1.Node, r *reasons) {
	tols := append(append([]corev1.Toleration{}, spec.Tolerations...), daemonTolerations...)
	if spec.HostNetwork {
		tols = append(tols, corev1.Toleration{Key: "node.kubernetes.io/network-unavailable",
			Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
	}
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule || tolerated(tols, t) {
			continue
		}
		r.add(fmt.Sprintf("taint %s is not tolerated", t.ToString()),
			"add a toleration for the taint to the DaemonSet (the runbook's DaemonSet tolerates every taint: operator Exists) or remove the taint")
	}
	nodeLabels := labels.Set(node.Labels)
	keys := make([]string, 0, len(spec.NodeSelector))
	for k := range spec.NodeSelector {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := spec.NodeSelector[k]
		got, has := node.Labels[k]
		if has && got == v {
			continue
		}
		actual := "the node has no label " + k
		if has {
			actual = "the node has " + k + "=" + got
		}
		r.add(fmt.Sprintf("nodeSelector %s=%s does not match (%s)", k, v, actual),
			"fix the DaemonSet's nodeSelector (the runbook's DaemonSet has none) or label the node")
	}
	if a := spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		matched := false
		for _, t := range terms {
			if termMatches(t, node.Name, nodeLabels) {
				matched = true
				break
			}
		}
		if !matched {
			r.add(fmt.Sprintf("required node affinity (%d term(s)) does not match the node's labels", len(terms)),
				"fix the DaemonSet's affinity.nodeAffinity or the node's labels")
		}
	}
}

// tolerated applies the toleration rules of the scheduler (Lt/Gt comparisons count as not
// tolerated: they are alpha).
func tolerated(tols []corev1.Toleration, t *corev1.Taint) bool {
	for _, tol := range tols {
		if (tol.Effect != "" && tol.Effect != t.Effect) || (tol.Key != "" && tol.Key != t.Key) {
			continue
		}
		switch tol.Operator {
		case corev1.TolerationOpExists:
			return true
		case "", corev1.TolerationOpEqual:
			if tol.Value == t.Value {
				return true
			}
		}
	}
	return false
}

var nodeSelectorOps = map[corev1.NodeSelectorOperator]selection.Operator{
	corev1.NodeSelectorOpIn: selection.In, corev1.NodeSelectorOpNotIn: selection.NotIn,
	corev1.NodeSelectorOpExists: selection.Exists, corev1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
	corev1.NodeSelectorOpGt: selection.GreaterThan, corev1.NodeSelectorOpLt: selection.LessThan,
}

// termMatches applies one NodeSelectorTerm: every expression and field must match; an empty
// term matches nothing (as in the scheduler).
func termMatches(t corev1.NodeSelectorTerm, nodeName string, nodeLabels labels.Set) bool {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return false
	}
	for _, ex := range t.MatchExpressions {
		op, known := nodeSelectorOps[ex.Operator]
		if !known {
			return false
		}
		req, err := labels.NewRequirement(ex.Key, op, ex.Values)
		if err != nil || !req.Matches(nodeLabels) {
			return false
		}
	}
	for _, f := range t.MatchFields {
		if f.Key != "metadata.name" {
			return false
		}
		in := containsString(f.Values, nodeName)
		if (f.Operator == corev1.NodeSelectorOpIn && !in) || (f.Operator == corev1.NodeSelectorOpNotIn && in) {
			return false
		}
	}
	return true
}

// resources adds the requests of spec that the node's allocatable minus what its pods
// request cannot hold.
func resources(ctx context.Context, e *Env, spec *corev1.PodSpec, node *corev1.Node, r *reasons) {
	want := podRequests(spec)
	if len(want) == 0 || len(node.Status.Allocatable) == 0 {
		return
	}
	pods, err := e.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node.Name).String()})
	if err != nil {
		return
	}
	used := corev1.ResourceList{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for name, q := range podRequests(&p.Spec) {
			sum := used[name]
			sum.Add(q)
			used[name] = sum
		}
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, string(n))
	}
	sort.Strings(names)
	for _, n := range names {
		name := corev1.ResourceName(n)
		alloc, has := node.Status.Allocatable[name]
		if !has {
			continue
		}
		free := alloc.DeepCopy()
		free.Sub(used[name])
		if q := want[name]; q.Cmp(free) > 0 {
			if free.Sign() < 0 {
				free = resource.Quantity{}
			}
			r.add(fmt.Sprintf("insufficient %s: the DaemonSet requests %s, the node has %s free of %s allocatable",
				name, q.String(), free.String(), alloc.String()),
				"free resources on the node or lower the DaemonSet's resource requests")
		}
	}
}

func podRequests(spec *corev1.PodSpec) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, c := range spec.Containers {
		for name, q := range c.Resources.Requests {
			sum := out[name]
			sum.Add(q)
			out[name] = sum
		}
	}
	return out
}
