package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/fixtures"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/kindlab"
	"github.com/keysync-dev/keysync/suites/internal/keytree"
	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/kind"
)

// The addon as the runbook lists it.
const (
	AddonNamespace = "image-key-synchronizer"
	AddonName      = "addon-image-key-synchronizer"
)

// podNamespace holds the suites' workload Pods.
const podNamespace = "default"

// requireCluster skips (with the lab it needs) where the lab has no cluster running the addon.
func (c *Context) requireCluster(t T) {
	t.Helper()
	if !c.HasCluster() {
		t.Skipf("needs a lab with a Kubernetes cluster whose nodes run the synchronizer addon (the kind lab: `make lab-up`, or a real cluster); this lab is KEYSYNC_LAB=%s", c.Lab.Lab)
	}
}

// lastNode is the node the single-node steps use (on kind a worker: names sort after
// "-control-plane").
func (c *Context) lastNode(ctx context.Context, t T) string {
	t.Helper()
	nodes := c.nodes(ctx, t)
	return nodes[len(nodes)-1]
}

// ---- 8. the addon's resources --------------------------------------------------------------

func featureAddon() Feature {
	return Feature{
		Name: "the addon's resources are exactly the runbook's", Area: AreaAddon,
		Setup: func(_ context.Context, t T, c *Context) { c.requireCluster(t) },
		Assess: []Step{
			{Name: "Namespace, ServiceAccount, Role, RoleBinding and DaemonSet exist with the runbook's names", Fn: assessAddonObjects},
			{Name: "the Role grants get/list/watch on secrets and create/patch on events, in its namespace only", Fn: assessAddonRBAC},
			{Name: "one ready synchronizer pod per schedulable node", Fn: func(ctx context.Context, t T, c *Context) {
				if err := c.waitAddonPods(ctx, nil); err != nil {
					t.Fatalf("%v", err)
				}
			}},
		},
	}
}

func assessAddonObjects(ctx context.Context, t T, c *Context) {
	cs := c.Client
	if _, err := cs.CoreV1().Namespaces().Get(ctx, AddonNamespace, metav1.GetOptions{}); err != nil {
		t.Errorf("Namespace %s: %v", AddonNamespace, err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(AddonNamespace).Get(ctx, AddonName, metav1.GetOptions{}); err != nil {
		t.Errorf("ServiceAccount %s/%s: %v", AddonNamespace, AddonName, err)
	}
	if _, err := cs.RbacV1().Roles(AddonNamespace).Get(ctx, AddonName, metav1.GetOptions{}); err != nil {
		t.Errorf("Role %s/%s: %v", AddonNamespace, AddonName, err)
	}
	rb, err := cs.RbacV1().RoleBindings(AddonNamespace).Get(ctx, AddonName, metav1.GetOptions{})
	if err != nil {
		t.Errorf("RoleBinding %s/%s: %v", AddonNamespace, AddonName, err)
	} else {
		if want := (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: AddonName}); rb.RoleRef != want {
			t.Errorf("RoleBinding %s refers to %+v, want %+v", AddonName, rb.RoleRef, want)
		}
		want := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: AddonName, Namespace: AddonNamespace}
		if len(rb.Subjects) != 1 || rb.Subjects[0] != want {
			t.Errorf("RoleBinding %s binds %+v, want exactly %+v", AddonName, rb.Subjects, want)
		}
	}
	ds, err := cs.AppsV1().DaemonSets(AddonNamespace).Get(ctx, AddonName, metav1.GetOptions{})
	if err != nil {
		t.Errorf("DaemonSet %s/%s: %v", AddonNamespace, AddonName, err)
	} else if sa := ds.Spec.Template.Spec.ServiceAccountName; sa != AddonName {
		t.Errorf("DaemonSet %s runs as ServiceAccount %q, want %q", AddonName, sa, AddonName)
	}
}

// RoleRules are the grants the runbook gives the addon: resource → verbs (core API group).
var roleRules = map[string][]string{
	"secrets": {"get", "list", "watch"},
	"events":  {"create", "patch"},
}

// ruleGrants flattens rules to resource → sorted verbs, or says what is not allowed in them.
func ruleGrants(rules []rbacv1.PolicyRule) (map[string][]string, []string) {
	got := map[string][]string{}
	var bad []string
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			bad = append(bad, fmt.Sprintf("non-resource URLs %v", r.NonResourceURLs))
		}
		if len(r.APIGroups) != 1 || r.APIGroups[0] != "" {
			bad = append(bad, fmt.Sprintf("API groups %q (want only the core group)", r.APIGroups))
		}
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				if !slices.Contains(got[res], v) {
					got[res] = append(got[res], v)
				}
			}
		}
	}
	for res := range got {
		slices.Sort(got[res])
	}
	return got, bad
}

func sameGrants(got, want map[string][]string) bool {
	if len(got) != len(want) {
		return false
	}
	for res, vs := range want {
		w := slices.Sorted(slices.Values(vs))
		if !slices.Equal(got[res], w) {
			return false
		}
	}
	return true
}

func bindsAddon(subjects []rbacv1.Subject) bool {
	return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
		return s.Kind == rbacv1.ServiceAccountKind && s.Name == AddonName && s.Namespace == AddonNamespace
	})
}

func assessAddonRBAC(ctx context.Context, t T, c *Context) {
	role, err := c.Client.RbacV1().Roles(AddonNamespace).Get(ctx, AddonName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("failed to get Role %s/%s: %v", AddonNamespace, AddonName, err)
	}
	got, bad := ruleGrants(role.Rules)
	for _, b := range bad {
		t.Errorf("Role %s grants %s", AddonName, b)
	}
	if !sameGrants(got, roleRules) {
		t.Errorf("Role %s grants %v, want exactly %v", AddonName, got, roleRules)
	}
	crbs, err := c.Client.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("failed to list ClusterRoleBindings: %v", err)
	}
	for _, b := range crbs.Items {
		if bindsAddon(b.Subjects) {
			t.Errorf("ClusterRoleBinding %s binds the addon's ServiceAccount: its grants must stay in %s", b.Name, AddonNamespace)
		}
	}
	rbs, err := c.Client.RbacV1().RoleBindings(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("failed to list RoleBindings: %v", err)
	}
	for _, b := range rbs.Items {
		if bindsAddon(b.Subjects) && (b.Namespace != AddonNamespace || b.Name != AddonName) {
			t.Errorf("RoleBinding %s/%s also binds the addon's ServiceAccount", b.Namespace, b.Name)
		}
	}
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
	ds, err := c.Client.AppsV1().DaemonSets(AddonNamespace).Get(ctx, AddonName, metav1.GetOptions{})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("failed to get DaemonSet %s/%s: %w", AddonNamespace, AddonName, err)
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
		return nil, nil, nil, fmt.Errorf("failed to parse DaemonSet %s's selector: %w", AddonName, err)
	}
	pods, err := c.Client.CoreV1().Pods(AddonNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
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

// ---- 9. a Pod of the encrypted image -------------------------------------------------------

// pushFresh pushes the fixtures anew under unique references (new layers, new keys) so that
// no node can hold any of them yet, and returns them. Their program is the one in the lab's
// plain fixture image, so no keysync checkout is needed.
func (c *Context) pushFresh(ctx context.Context, t T) Fixtures {
	t.Helper()
	if c.Lab.Registry == "" {
		t.Fatalf("the lab env file has no REGISTRY to push a fresh fixture to")
	}
	dir, err := os.MkdirTemp("", "keysync-suites-fixtures-")
	if err != nil {
		t.Fatalf("failed to create fixtures directory: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	program, err := fixtures.MarkerFromImage(ctx, c.Fixtures.Plain, fixtures.RegistrySystemContext(true), dir)
	if err != nil {
		t.Fatalf("%v", err)
	}
	marker := filepath.Join(dir, "marker")
	if err := os.WriteFile(marker, program, 0o755); err != nil {
		t.Fatalf("failed to write the marker program: %v", err)
	}
	out := filepath.Join(dir, "out")
	if _, err := fixtures.Push(ctx, fixtures.Options{Out: out, Registry: c.Lab.Registry, Prefix: "keysync-suites",
		RunID: c.RunID, InsecureSkipTLSVerify: true, MarkerBinary: marker, Logger: c.logger()}); err != nil {
		t.Fatalf("failed to push fresh fixtures to %s: %v", c.Lab.Registry, err)
	}
	fx, err := LoadFixtures(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatalf("%v", err)
	}
	return fx
}

// podEventMessages returns the messages of the Events recorded on pod.
func (c *Context) podEventMessages(ctx context.Context, pod *corev1.Pod) ([]string, error) {
	list, err := c.Client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + pod.Name})
	if err != nil {
		return nil, fmt.Errorf("failed to list Events of pod %s: %w", pod.Name, err)
	}
	var msgs []string
	for _, e := range list.Items {
		if e.InvolvedObject.UID == pod.UID {
			msgs = append(msgs, e.Reason+": "+e.Message)
		}
	}
	return msgs, nil
}

func featurePod() Feature {
	var (
		s    *scope
		img  Image
		pod  *corev1.Pod
		node string
	)
	return Feature{
		Name: "a Pod of an encrypted image fails to pull until its key is synced, then runs", Area: AreaPod,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requireCluster(t)
			img = c.pushFresh(ctx, t).A
			node = c.lastNode(ctx, t)
			p := c.podFor("pod", node, img.Ref, fixtureOnceArg)
			p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
			pod = c.createPod(ctx, t, s, p)
		},
		Assess: []Step{
			{Name: "before the key is synced the Pod shows ErrImagePull/ImagePullBackOff with the missing-key message in its Events", Fn: func(ctx context.Context, t T, c *Context) {
				var reason string
				var msgs []string
				_, err := c.waitPod(ctx, pod.Name, 2*c.syncTimeout(), func(p *corev1.Pod) (bool, error) {
					if p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodSucceeded {
						return false, fmt.Errorf("pod %s reached %s without the key: the node decrypted %s without its private key", p.Name, p.Status.Phase, img.Ref)
					}
					for _, cs := range p.Status.ContainerStatuses {
						if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
							reason = w.Reason
						}
					}
					var err error
					if msgs, err = c.podEventMessages(ctx, p); err != nil {
						return false, err
					}
					return reason != "" && slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, MissingKeyMessage) }), nil
				})
				if err != nil {
					t.Fatalf("pod %s on node %s: waiting reason %q, Events %q: want ErrImagePull/ImagePullBackOff and %q: %v",
						pod.Name, node, reason, msgs, MissingKeyMessage, err)
				}
				t.Logf("pod %s on node %s: %s", pod.Name, node, reason)
			}},
			{Name: "after the key Secret is created the Pod runs and prints its marker", Fn: func(ctx context.Context, t T, c *Context) {
				c.syncKey(ctx, t, s, "pod-key", img)
				// The kubelet retries the pull with a back-off (10 s, doubling) that started
				// before the key was there.
				last, err := c.waitPod(ctx, pod.Name, 4*time.Minute, func(p *corev1.Pod) (bool, error) {
					if p.Status.Phase == corev1.PodFailed {
						return false, fmt.Errorf("pod %s failed: %+v", p.Name, p.Status.ContainerStatuses)
					}
					return p.Status.Phase == corev1.PodSucceeded, nil
				})
				if err != nil {
					phase := corev1.PodPhase("")
					if last != nil {
						phase = last.Status.Phase
					}
					t.Fatalf("pod %s on node %s did not complete after its key was synced (phase %q): %v", pod.Name, node, phase, err)
				}
				logs, err := c.podLogs(ctx, pod.Name)
				if err != nil {
					t.Fatalf("%v", err)
				}
				if img.Marker != "" && !strings.Contains(logs, img.Marker) {
					t.Fatalf("pod %s printed %q, want it to contain %q", pod.Name, logs, img.Marker)
				}
			}},
		},
	}
}

// ---- 10. resilience ------------------------------------------------------------------------

func featureResilience() Feature {
	var (
		s      *scope
		before []string
	)
	return Feature{
		Name: "a restarted synchronizer pod and an added node get every key", Area: AreaResilience,
		Labels: map[string]string{LabelDisruptive: "true"},
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requireCluster(t)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.requireNoKey(ctx, t, c.Fixtures.B)
			c.syncKey(ctx, t, s, "res-a", c.Fixtures.A)
			c.syncKey(ctx, t, s, "res-b", c.Fixtures.B)
			var err error
			if before, err = c.snapshots(ctx, t); err != nil {
				t.Fatalf("%v", err)
			}
		},
		Assess: []Step{
			{Name: "a restarted synchronizer pod leaves every key in place with the exact bytes", Fn: func(ctx context.Context, t T, c *Context) {
				node := c.lastNode(ctx, t)
				_, _, ready, err := c.addonPods(ctx)
				if err != nil {
					t.Fatalf("%v", err)
				}
				old, ok := ready[node]
				if !ok {
					t.Fatalf("node %s has no ready synchronizer pod to restart", node)
				}
				if err := c.Client.CoreV1().Pods(AddonNamespace).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
					t.Fatalf("failed to delete synchronizer pod %s: %v", old.Name, err)
				}
				t.Logf("deleted synchronizer pod %s on node %s", old.Name, node)
				// While the pod is gone and comes back, the keys must never go missing.
				done := make(chan error, 1)
				go func() { done <- c.waitAddonPods(ctx, map[types.UID]bool{old.UID: true}) }()
				var gaps []string
				for waiting := true; waiting; {
					select {
					case err := <-done:
						if err != nil {
							t.Fatalf("the DaemonSet did not bring the synchronizer back: %v", err)
						}
						waiting = false
					case <-time.After(c.pollInterval()):
					}
					for _, img := range []Image{c.Fixtures.A, c.Fixtures.B} {
						files, err := keytree.Files(ctx, c.Driver, node, mustNormalize(t, img.Key))
						if err == nil && len(files) == 0 {
							gaps = append(gaps, img.Name)
						}
					}
				}
				if len(gaps) > 0 {
					t.Errorf("node %s: keys went missing while the synchronizer restarted: %v", node, slices.Compact(gaps))
				}
				for _, img := range []Image{c.Fixtures.A, c.Fixtures.B} {
					if _, err := c.waitFile(ctx, mustNormalize(t, img.Key)); err != nil {
						t.Fatalf("%s: %v", img.Name, err)
					}
				}
				after, err := c.snapshots(ctx, t)
				if err != nil {
					t.Fatalf("%v", err)
				}
				if !slices.Equal(after, before) {
					t.Fatalf("the keys tree changed across the restart:\nbefore: %q\nafter:  %q", before, after)
				}
				c.pullEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
			{Name: "a node added to the cluster gets every key", Fn: func(ctx context.Context, t T, c *Context) {
				if c.NodeAdder == nil {
					t.Skipf("this lab (KEYSYNC_LAB=%s) cannot add nodes: give the run --hook-add-node (or $%s); the kind lab adds its own workers", c.Lab.Lab, nodedriver.EnvHookAddNode)
				}
				name := c.nameFor("node")
				drv, err := c.NodeAdder.AddNode(ctx, name)
				if errors.Is(err, nodedriver.ErrUnsupported) {
					t.Skipf("the lab cannot add a node: %v", err)
				}
				if err != nil {
					t.Fatalf("failed to add node %s: %v", name, err)
				}
				t.Cleanup(func() {
					rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
					defer cancel()
					err := c.NodeAdder.RemoveNode(rctx, name)
					switch {
					case errors.Is(err, nodedriver.ErrUnsupported):
						t.Logf("note: %v", err)
					case err != nil:
						t.Errorf("failed to remove node %s: %v", name, err)
					}
				})
				t.Logf("node %s joined", name)
				for _, img := range []Image{c.Fixtures.A, c.Fixtures.B} {
					norm := mustNormalize(t, img.Key)
					var files []nodedriver.Entry
					err := wait.PollUntilContextTimeout(ctx, c.pollInterval(), 2*c.syncTimeout(), true, func(ctx context.Context) (bool, error) {
						files, _ = keytree.Files(ctx, drv, name, norm)
						return len(files) > 0, nil
					})
					if err != nil {
						t.Fatalf("node %s: the key of %s did not appear: %v", name, img.Name, err)
					}
					data, err := drv.ReadKey(ctx, name, files[0].Path)
					if err != nil || !bytes.Equal(data, norm) || files[0].Mode.Perm() != 0o600 {
						t.Errorf("node %s: %s: mode %04o, exact bytes %v (err %v)", name, files[0].Path, files[0].Mode.Perm(), bytes.Equal(data, norm), err)
					}
				}
				problems, err := keytree.Audit(ctx, drv, name, c.Lab.SyncSubdir)
				if err != nil {
					t.Fatalf("node %s: failed to audit keys tree: %v", name, err)
				}
				for _, p := range problems {
					t.Errorf("node %s: %s: %s", name, p.Path, p.Reason)
				}
				if err := drv.PullImage(ctx, name, c.Fixtures.B.Ref); err != nil {
					t.Errorf("node %s: pulling %s failed: %v", name, c.Fixtures.B.Ref, err)
				}
				if err := c.waitAddonPods(ctx, nil); err != nil {
					t.Errorf("%v", err)
				}
			}},
		},
	}
}

// kindNodeAdder adds workers to the kind lab through lab/kindlab (as `keysync kind-lab
// add-worker` does), which also rewrites the lab env file's NODES.
type kindNodeAdder struct {
	env     lab.Env
	envPath string
	client  kubernetes.Interface
	logger  *slog.Logger
}

// open finds the kind cluster (its control plane is <cluster>-control-plane) and opens the lab.
func (a *kindNodeAdder) open() (*kindlab.Lab, error) {
	var cluster string
	for _, n := range a.env.Nodes {
		if cl, ok := strings.CutSuffix(n, "-control-plane"); ok {
			cluster = cl
		}
	}
	if cluster == "" {
		return nil, fmt.Errorf("failed to find the kind cluster: no node of %v is named <cluster>-control-plane", a.env.Nodes)
	}
	l, err := kindlab.New(kindlab.Options{Name: cluster, OutDir: filepath.Dir(a.env.Kubeconfig), EnvPath: a.envPath, Logger: a.logger})
	if err != nil {
		return nil, fmt.Errorf("failed to open the kind lab %s: %w", cluster, err)
	}
	return l, nil
}

func (a *kindNodeAdder) AddNode(ctx context.Context, name string) (nodedriver.Driver, error) {
	l, err := a.open()
	if err != nil {
		return nil, err
	}
	if err := l.AddNode(ctx, name, 4*time.Minute); err != nil {
		return nil, fmt.Errorf("failed to add worker %s to the kind lab %s: %w", name, l.Opts.Name, err)
	}
	return kind.New(kind.Options{Nodes: []string{name}, Client: a.client, Logger: a.logger})
}

func (a *kindNodeAdder) RemoveNode(ctx context.Context, name string) error {
	l, err := a.open()
	if err != nil {
		return err
	}
	if err := l.RemoveNode(ctx, name, 2*time.Minute); err != nil {
		return fmt.Errorf("failed to remove worker %s from the kind lab %s: %w", name, l.Opts.Name, err)
	}
	return nil
}

// ---- 11. isolation -------------------------------------------------------------------------

// outsideRefs are images from outside registries that no node holds: a pull must be refused
// by registries.conf ("blocked") before any lookup.
func outsideRefs() []string {
	sum := sha256.Sum256([]byte("keysync-suites: an image no node has"))
	return []string{
		"docker.io/library/busybox:latest",
		"registry.k8s.io/pause:3.10.1@sha256:" + hex.EncodeToString(sum[:]),
	}
}

// networkErrorHints are what a pull error says when it tried the network.
var networkErrorHints = []string{"no such host", "i/o timeout", "dial tcp", "lookup ", "connection refused", "network is unreachable"}

// blockedQuickly is how long a refused pull may take (a lookup or connect would be slower).
const blockedQuickly = 15 * time.Second

// checkBlockedPull says what is wrong with a pull's outcome ("" when it was refused as blocked).
func checkBlockedPull(err error, took time.Duration) string {
	switch {
	case err == nil:
		return "succeeded"
	case slices.ContainsFunc(networkErrorHints, func(h string) bool { return strings.Contains(err.Error(), h) }):
		return fmt.Sprintf("tried the network: %v", err)
	case !strings.Contains(err.Error(), "blocked"):
		return fmt.Sprintf("failed without the registries.conf \"blocked\" error: %v", err)
	case took > blockedQuickly:
		return fmt.Sprintf("took %s (more than %s): %v", took.Round(time.Millisecond), blockedQuickly, err)
	}
	return ""
}

// corefileForwards returns the forward/proxy lines of a Corefile.
func corefileForwards(corefile string) []string {
	var out []string
	for _, line := range strings.Split(corefile, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "forward" || f[0] == "proxy") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

func featureIsolation() Feature {
	return Feature{
		Name: "nothing in the cluster looks up or contacts an outside host", Area: AreaIsolation,
		Setup: func(_ context.Context, t T, c *Context) {
			c.requireCluster(t)
			if c.Lab.Lab == lab.KindCluster {
				// Isolation is what the labs promise; a real cluster may well pull from outside.
				t.Skipf("isolation is a property of keysync's labs (KEYSYNC_LAB=kind); this is KEYSYNC_LAB=%s", c.Lab.Lab)
			}
		},
		Assess: []Step{
			{Name: "pulls from outside registries are refused as blocked on every node, quickly", Fn: func(ctx context.Context, t T, c *Context) {
				for _, n := range c.nodes(ctx, t) {
					for _, ref := range outsideRefs() {
						pctx, cancel := context.WithTimeout(ctx, 4*blockedQuickly)
						start := time.Now()
						err := c.Driver.PullImage(pctx, n, ref)
						took := time.Since(start)
						cancel()
						if what := checkBlockedPull(err, took); what != "" {
							t.Errorf("node %s: pulling %s %s", n, ref, what)
						} else {
							t.Logf("node %s: %s refused in %s", n, ref, took.Round(time.Millisecond))
						}
					}
				}
			}},
			{Name: "no CoreDNS forwards lookups outside", Fn: func(ctx context.Context, t T, c *Context) {
				deps, err := c.Client.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
				if err != nil {
					t.Fatalf("failed to list Deployments: %v", err)
				}
				found := 0
				for _, d := range deps.Items {
					if d.Name != "coredns" && d.Spec.Template.Labels["k8s-app"] != "kube-dns" {
						continue
					}
					found++
					cm, err := c.Client.CoreV1().ConfigMaps(d.Namespace).Get(ctx, "coredns", metav1.GetOptions{})
					if err != nil {
						t.Errorf("CoreDNS Deployment %s/%s exists but its Corefile cannot be read: %v", d.Namespace, d.Name, err)
						continue
					}
					for _, fwd := range corefileForwards(cm.Data["Corefile"]) {
						t.Errorf("CoreDNS %s/%s forwards lookups: %q", d.Namespace, d.Name, fwd)
					}
				}
				if found == 0 {
					t.Logf("no CoreDNS Deployment: the DNS addon is skipped, nothing forwards lookups")
				}
			}},
		},
	}
}
