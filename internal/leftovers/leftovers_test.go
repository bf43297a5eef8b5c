package leftovers_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/internal/leftovers"
	"github.com/keysync-dev/keysync/internal/names"
)

func TestMatches(t *testing.T) {
	mb := func(extra ...string) map[string]string {
		l := map[string]string{names.LabelManagedBy: names.ManagedBy}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	tests := []struct {
		name   string
		labels map[string]string
		runID  string
		want   bool
	}{
		{"no labels", nil, "", false},
		{"other manager", map[string]string{names.LabelManagedBy: "helm"}, "", false},
		{"run ID without managed-by", map[string]string{names.LabelRunID: "abc"}, "abc", false},
		{"any run", mb(names.LabelRunID, "abc"), "", true},
		{"managed-by without run ID, any run", mb(), "", true},
		{"managed-by without run ID, one run", mb(), "abc", false},
		{"same run", mb(names.LabelRunID, "abc"), "abc", true},
		{"child of run", mb(names.LabelRunID, "abc-12ef"), "abc", true},
		{"other run", mb(names.LabelRunID, "abd"), "abc", false},
		{"prefix without dash", mb(names.LabelRunID, "abcd"), "abc", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := leftovers.Matches(tt.labels, tt.runID); got != tt.want {
				t.Errorf("Matches(%v, %q) = %v, want %v", tt.labels, tt.runID, got, tt.want)
			}
		})
	}
}

// world is a cluster holding a killed run's objects next to the customer's own.
type world struct {
	cs kubernetes.Interface
}

func labels(runID string) map[string]string {
	l := map[string]string{names.LabelManagedBy: names.ManagedBy}
	if runID != "" {
		l[names.LabelRunID] = runID
	}
	return l
}

func (w world) mustCreate(t *testing.T, obj any) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch o := obj.(type) {
	case *corev1.Namespace:
		_, err = w.cs.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
	case *corev1.Secret:
		_, err = w.cs.CoreV1().Secrets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *corev1.Pod:
		_, err = w.cs.CoreV1().Pods(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *corev1.Service:
		_, err = w.cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *appsv1.DaemonSet:
		_, err = w.cs.AppsV1().DaemonSets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *coordinationv1.Lease:
		_, err = w.cs.CoordinationV1().Leases(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	default:
		t.Fatalf("unknown object %T", obj)
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("failed to create %T: %v", obj, err)
	}
}

func ns(name string, l map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func secret(namespace, name string, l map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: l},
		Data: map[string][]byte{"k": []byte("v")}}
}

func pod(namespace, name string, l map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: l},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c", Image: "example.invalid/x"}}}}
}

func service(namespace, name string, l map[string]string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: l},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
}

func daemonSet(namespace, name string, l map[string]string) *appsv1.DaemonSet {
	sel := map[string]string{"app": name}
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: l},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/x"}}}}}}
}

func lease(namespace, name string, l map[string]string) *coordinationv1.Lease {
	holder := "r5@host/1/abcd"
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: l},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
}

// gone reports whether the object no longer exists or is being deleted (a namespace without a
// namespace controller stays Terminating).
func gone(t *testing.T, cs kubernetes.Interface, o leftovers.Object) bool {
	t.Helper()
	ctx := context.Background()
	var m metav1.Object
	var err error
	switch o.Kind {
	case "Namespace":
		m, err = cs.CoreV1().Namespaces().Get(ctx, o.Name, metav1.GetOptions{})
	case "Secret":
		m, err = cs.CoreV1().Secrets(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
	case "Pod":
		m, err = cs.CoreV1().Pods(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
	case "Service":
		m, err = cs.CoreV1().Services(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
	case "DaemonSet":
		m, err = cs.AppsV1().DaemonSets(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
	case "Lease":
		m, err = cs.CoordinationV1().Leases(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
	default:
		t.Fatalf("unknown kind %s", o.Kind)
	}
	if apierrors.IsNotFound(err) {
		return true
	}
	if err != nil {
		t.Fatalf("failed to get %s: %v", o, err)
	}
	return m.GetDeletionTimestamp() != nil
}

func TestSweep(t *testing.T) {
	srv := kubetest.StartT(t)
	cs, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	sys := names.Namespace
	tests := []struct {
		name  string
		runID string
		// make creates the objects of this case (in namespaces of its own: prefix).
		make func(w world, p string)
		// want are removed; keep must survive.
		want, keep []leftovers.Object
	}{
		{
			name:  "killed run: agent namespace with its DaemonSet, Secrets, a pod and a Service",
			runID: "r1",
			make: func(w world, p string) {
				w.mustCreate(t, ns(p+"agent", labels("r1")))
				w.mustCreate(t, daemonSet(p+"agent", "keysync-node-agent", labels("r1")))
				w.mustCreate(t, secret(sys, p+"ks-r1-key-a", labels("r1-0a1b")))
				w.mustCreate(t, pod("default", p+"run", labels("r1")))
				w.mustCreate(t, service("default", p+"svc", labels("r1-ffff")))
			},
			want: []leftovers.Object{
				{Kind: "Namespace", Name: "agent"}, {Kind: "DaemonSet", Namespace: "agent", Name: "keysync-node-agent"},
				{Kind: "Secret", Namespace: sys, Name: "ks-r1-key-a"}, {Kind: "Pod", Namespace: "default", Name: "run"},
				{Kind: "Service", Namespace: "default", Name: "svc"},
			},
		},
		{
			name:  "killed run in the shipped agent namespace: its DaemonSet, pull Secret and Lease go, the namespace stays",
			runID: "r5",
			make: func(w world, p string) {
				w.mustCreate(t, ns(p+"shipped", map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}))
				w.mustCreate(t, daemonSet(p+"shipped", "keysync-node-agent", labels("r5")))
				w.mustCreate(t, secret(p+"shipped", "keysync-node-agent-pull", labels("r5")))
				w.mustCreate(t, lease(p+"shipped", "keysync-node-agent", labels("r5")))
			},
			want: []leftovers.Object{
				{Kind: "DaemonSet", Namespace: "shipped", Name: "keysync-node-agent"},
				{Kind: "Secret", Namespace: "shipped", Name: "keysync-node-agent-pull"},
				{Kind: "Lease", Namespace: "shipped", Name: "keysync-node-agent"},
			},
			keep: []leftovers.Object{{Kind: "Namespace", Name: "shipped"}},
		},
		{
			name:  "the customer's own objects stay: unlabelled keyprotect-config, key Secret, namespace",
			runID: "",
			make: func(w world, p string) {
				w.mustCreate(t, secret(sys, p+names.KPConfigSecret, nil))
				w.mustCreate(t, secret(sys, p+"prod-key", map[string]string{"app": "prod"}))
				w.mustCreate(t, ns(p+"prod", map[string]string{names.LabelManagedBy: "helm"}))
				w.mustCreate(t, secret(sys, p+"lab-kpconfig", labels("r2")))
			},
			want: []leftovers.Object{{Kind: "Secret", Namespace: sys, Name: "lab-kpconfig"}},
			keep: []leftovers.Object{
				{Kind: "Secret", Namespace: sys, Name: names.KPConfigSecret}, {Kind: "Secret", Namespace: sys, Name: "prod-key"},
				{Kind: "Namespace", Name: "prod"},
			},
		},
		{
			name:  "one run only: another run's objects and unlabelled ones stay",
			runID: "r3",
			make: func(w world, p string) {
				w.mustCreate(t, secret(sys, p+"mine", labels("r3")))
				w.mustCreate(t, secret(sys, p+"theirs", labels("r30")))
				w.mustCreate(t, secret(sys, p+"no-run", labels("")))
				w.mustCreate(t, ns(p+"theirs-ns", labels("r4")))
			},
			want: []leftovers.Object{{Kind: "Secret", Namespace: sys, Name: "mine"}},
			keep: []leftovers.Object{
				{Kind: "Secret", Namespace: sys, Name: "theirs"}, {Kind: "Secret", Namespace: sys, Name: "no-run"},
				{Kind: "Namespace", Name: "theirs-ns"},
			},
		},
	}
	w := world{cs: cs}
	w.mustCreate(t, ns(sys, nil))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := string(rune('a'+i)) + "-"
			tt.make(w, p)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if dry, err := leftovers.Sweep(ctx, cs, leftovers.Options{RunID: tt.runID, DryRun: true}); err != nil {
				t.Fatalf("dry run: %v", err)
			} else if removed := ofCase(dry, p); len(removed) != len(tt.want) {
				t.Fatalf("dry run found %v, want %d objects", removed, len(tt.want))
			}
			removed, err := leftovers.Sweep(ctx, cs, leftovers.Options{RunID: tt.runID})
			if err != nil {
				t.Fatalf("Sweep: %v", err)
			}
			got := ofCase(removed, p)
			for _, o := range tt.want {
				if !slices.ContainsFunc(got, func(r leftovers.Object) bool { return r.String() == o.String() }) {
					t.Errorf("Sweep did not report %s removed (removed %v)", o, got)
				}
				if o := withPrefix(o, p); !gone(t, cs, o) {
					t.Errorf("%s still exists after Sweep", o)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("Sweep removed %v, want exactly %v", got, tt.want)
			}
			for _, o := range tt.keep {
				if o := withPrefix(o, p); gone(t, cs, o) {
					t.Errorf("Sweep removed %s, which it must never touch", o)
				}
			}
			again, err := leftovers.Find(ctx, cs, tt.runID)
			if err != nil {
				t.Fatal(err)
			}
			if left := ofCase(again, p); len(left) > 0 {
				t.Errorf("Find after Sweep still lists %v", left)
			}
		})
	}
}

// ofCase keeps the objects of one case (name or namespace with its prefix) and strips the
// prefix.
func ofCase(objs []leftovers.Object, p string) []leftovers.Object {
	var out []leftovers.Object
	for _, o := range objs {
		n, nok := strings.CutPrefix(o.Name, p)
		ns, sok := strings.CutPrefix(o.Namespace, p)
		if !nok && !sok {
			continue
		}
		o.Name, o.Namespace = n, ns
		out = append(out, o)
	}
	return out
}

// withPrefix is ofCase's inverse: a case's namespaces and its objects in shared namespaces
// carry the prefix.
func withPrefix(o leftovers.Object, p string) leftovers.Object {
	switch o.Namespace {
	case "":
		o.Name = p + o.Name
	case "default", names.Namespace:
		o.Name = p + o.Name
	default:
		o.Namespace = p + o.Namespace
	}
	return o
}
