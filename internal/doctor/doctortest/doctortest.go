// Package doctortest builds, on a bare kube-apiserver (internal/kubetest: no kubelet, no
// controllers), what a healthy synchronizer deployment looks like to `keysync doctor`: nodes,
// the runbook's objects, one Running and Ready pod per node, keyprotect-config; and a fake
// NodeInspector. Tests then break one thing at a time.
package doctortest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/doctor"
	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/internal/names"
)

// APIKey is the API key of the healthy keyprotect-config; no doctor output may contain it.
const APIKey = "doctortest-apikey-MUST-NOT-LEAK-7f3a9c"

// Image is the synchronizer image of the healthy DaemonSet.
const Image = "keysync-syncer:dev"

// Nodes are the nodes Cluster creates.
var Nodes = []string{"n1", "n2"}

// PodLabels are the synchronizer pods' labels (the DaemonSet's selector).
var PodLabels = map[string]string{"app.kubernetes.io/name": names.Addon}

// Config is a healthy keyprotect-config (https; never contacted unless a test says so).
func Config() kpkey.Config {
	return kpkey.Config{URL: "https://kms.example", InstanceID: "11111111-2222-4333-8444-555555555555", APIKey: APIKey}
}

// Cluster starts a bare kube-apiserver (internal/kubetest) with Nodes created, and returns it
// with a client.
func Cluster(t testing.TB) (*kubetest.Server, kubernetes.Interface) {
	t.Helper()
	srv := kubetest.StartT(t)
	cs, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	CreateNodes(t.Context(), t, cs)
	return srv, cs
}

// CreateNodes creates Nodes, Ready, with 2 CPUs, 4Gi of memory and 110 pods allocatable.
func CreateNodes(ctx context.Context, t testing.TB, cs kubernetes.Interface) {
	t.Helper()
	for _, n := range Nodes {
		node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n,
			Labels: map[string]string{"kubernetes.io/hostname": n, "kubernetes.io/os": "linux"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("failed to create node %s: %v", n, err)
		}
		alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"),
			corev1.ResourceMemory: resource.MustParse("4Gi"), corev1.ResourcePods: resource.MustParse("110")}
		node.Status = corev1.NodeStatus{Capacity: alloc, Allocatable: alloc,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
		node, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("failed to set node %s status: %v", n, err)
		}
		// Admission taints a new node not-ready; the node lifecycle controller (absent here)
		// removes the taint once the node is Ready.
		node.Spec.Taints = nil
		if _, err := cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("failed to untaint node %s: %v", n, err)
		}
	}
}

// Deploy creates in ns the runbook's objects as syncer/deploy has them, one Running and Ready
// synchronizer pod per node of Nodes, and keyprotect-config holding cfg.
func Deploy(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns string, cfg kpkey.Config) {
	t.Helper()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("failed to create %s: %v", what, err)
		}
	}
	meta := metav1.ObjectMeta{Name: names.Addon, Namespace: ns}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must("namespace", err)
	_, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, metav1.CreateOptions{})
	must("serviceaccount", err)
	_, err = cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}}, metav1.CreateOptions{})
	must("role", err)
	_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, RoleBinding(ns, "Role", names.Addon, names.Addon), metav1.CreateOptions{})
	must("rolebinding", err)
	_, err = cs.AppsV1().DaemonSets(ns).Create(ctx, DaemonSet(ns), metav1.CreateOptions{})
	must("daemonset", err)
	for _, n := range Nodes {
		CreatePod(ctx, t, cs, ns, n)
	}
	data, err := json.Marshal(cfg)
	must("config.json", err)
	_, err = cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: names.KPConfigSecret, Namespace: ns},
		Data: map[string][]byte{names.KPConfigKey: data}}, metav1.CreateOptions{})
	must("keyprotect-config", err)
}

// RoleBinding binds ServiceAccount ns/sa to roleKind/role.
func RoleBinding(ns, roleKind, role, sa string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: names.Addon, Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: roleKind, Name: role},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}}}
}

// DaemonSet is the runbook's DaemonSet, shaped like syncer/deploy/daemonset.yaml.
func DaemonSet(ns string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: names.Addon, Namespace: ns, Labels: PodLabels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: PodLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: PodLabels},
				Spec:       podSpec(""),
			},
		},
	}
}

func podSpec(node string) corev1.PodSpec {
	return corev1.PodSpec{
		NodeName:           node,
		ServiceAccountName: names.Addon,
		Tolerations:        []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		Containers: []corev1.Container{{
			Name: "syncer", Image: Image,
			Args: []string{"--keys-dir=" + names.KeysDir, "--staging-dir=/etc/crio/.keysync-staging"},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")}},
			VolumeMounts: []corev1.VolumeMount{{Name: "crio", MountPath: "/etc/crio"}},
		}},
		Volumes: []corev1.Volume{{Name: "crio", VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: "/etc/crio"}}}},
	}
}

// PodName is the synchronizer pod CreatePod makes on node.
func PodName(node string) string { return "syncer-" + node }

// CreatePod creates the synchronizer pod of node, Running and Ready (set through the status
// subresource: there is no kubelet).
func CreatePod(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns, node string) {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: PodName(node), Namespace: ns, Labels: PodLabels},
		Spec:       podSpec(node),
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("failed to create pod on %s: %v", node, err)
	}
	now := metav1.Now()
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "syncer", Image: Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("failed to set pod status on %s: %v", node, err)
	}
}

// Event records an Event on an object, as a kubelet or the synchronizer on node would.
func Event(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns, kind, name, uid, reason, node, msg string) *corev1.Event {
	t.Helper()
	now := metav1.NewTime(time.Now())
	ev, err := cs.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: name + ".", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: kind, Namespace: ns, Name: name, UID: types.UID(uid), APIVersion: "v1"},
		Reason:         reason, Message: msg, Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "test", Host: node},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("failed to create Event %s on %s %s: %v", reason, kind, name, err)
	}
	return ev
}

// Inspector is a fake doctor.NodeInspector: per node, the verdicts and the keys path it
// returns (a node without an entry gets the healthy answer).
type Inspector struct {
	mu       sync.Mutex
	Verdicts map[string][]doctor.Verdict
	KeysPath map[string]string
	Err      map[string]error
}

var _ doctor.NodeInspector = (*Inspector)(nil)

// HealthyVerdicts is a healthy keys tree: the synchronizer's directory with one key.
func HealthyVerdicts() []doctor.Verdict {
	return []doctor.Verdict{
		{Path: names.SyncSubdir, Type: doctor.TypeDir, Mode: 0o700},
		{Path: names.SyncSubdir + "/0a1b-ns-key-k.pem", Type: doctor.TypeFile, Mode: 0o600, Size: 1704, Accepted: true,
			SHA256: "3f0c7e1d2b4a59687e6f5d4c3b2a1908f7e6d5c4b3a291807f6e5d4c3b2a1908"},
	}
}

// Audit implements doctor.NodeInspector.
func (f *Inspector) Audit(_ context.Context, node string) ([]doctor.Verdict, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.Err[node]; err != nil {
		return nil, err
	}
	if v, ok := f.Verdicts[node]; ok {
		return append([]doctor.Verdict(nil), v...), nil
	}
	return HealthyVerdicts(), nil
}

// DecryptionKeysPath implements doctor.NodeInspector.
func (f *Inspector) DecryptionKeysPath(_ context.Context, node string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.Err[node]; err != nil {
		return "", err
	}
	if p, ok := f.KeysPath[node]; ok {
		return p, nil
	}
	return names.KeysRoot, nil
}

// Namespace returns a fresh namespace name for case i.
func Namespace(i int) string { return fmt.Sprintf("iks-%02d", i) }
