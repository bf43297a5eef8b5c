package deploy

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/internal/leftovers"
	"github.com/keysync-dev/keysync/internal/names"
)

// hack/runner-kubeconfig.sh against a real kube-apiserver (RBAC): the kubeconfig it writes
// authenticates as the runner's ServiceAccount, which may do what a run does and nothing else:
// it works in the node agent's namespace the manifest ships, and creates nothing (no Secret,
// Pod, DaemonSet, exec session, namespace) elsewhere.
func TestRunnerKubeconfig(t *testing.T) {
	srv := kubetest.StartT(t)
	ctx := context.Background()
	admin, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{names.Namespace, "elsewhere"} {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "runner.kubeconfig")
	cmd := exec.CommandContext(ctx, filepath.Join("..", "..", "hack", "runner-kubeconfig.sh"), srv.KubeconfigPath, out)
	cmd.Env = append(os.Environ(), "KUBECTL="+filepath.Join(os.Getenv(kubetest.EnvBinDir), "kubectl"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runner-kubeconfig.sh: %v\n%s", err, b)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig %s: %v, %v; want mode 0600", out, fi, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", out)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	secret := func(ns string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ks-t-key", Namespace: ns}}
	}
	const agentNS = "keysync-suites" // shipped by the manifest
	// canI asks the API server whether the runner may verb resource/sub in ns (a Forbidden
	// error when not): for exec, which needs a running pod to call.
	canI := func(ns, resource, sub, verb string) error {
		r, err := runner.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: verb, Resource: resource, Subresource: sub}}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if !r.Status.Allowed {
			return apierrors.NewForbidden(schema.GroupResource{Resource: resource + "/" + sub}, "", errors.New(r.Status.Reason))
		}
		return nil
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "keysync-node-agent", Namespace: agentNS},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}}}
	tests := []struct {
		name    string
		call    func() error
		allowed bool
	}{
		{"create a Secret in the synchronizer's namespace", func() error {
			_, err := runner.CoreV1().Secrets(names.Namespace).Create(ctx, secret(names.Namespace), metav1.CreateOptions{})
			return err
		}, true},
		{"delete it again", func() error {
			return runner.CoreV1().Secrets(names.Namespace).Delete(ctx, "ks-t-key", metav1.DeleteOptions{})
		}, true},
		{"list nodes", func() error { _, err := runner.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err }, true},
		{"the agent's DaemonSet in the shipped namespace keysync-suites", func() error {
			_, err := runner.AppsV1().DaemonSets(agentNS).Create(ctx, ds, metav1.CreateOptions{})
			return err
		}, true},
		{"the agent's pull Secret there", func() error {
			_, err := runner.CoreV1().Secrets(agentNS).Create(ctx, secret(agentNS), metav1.CreateOptions{})
			return err
		}, true},
		{"the Lease there", func() error {
			_, err := runner.CoordinationV1().Leases(agentNS).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "keysync-node-agent"}}, metav1.CreateOptions{})
			return err
		}, true},
		{"exec in the agent pods", func() error { return canI(agentNS, "pods", "exec", "create") }, true},
		{"no namespace created", func() error {
			_, err := runner.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "keysync-other"}}, metav1.CreateOptions{})
			return err
		}, false},
		{"no namespace deleted", func() error {
			return runner.CoreV1().Namespaces().Delete(ctx, agentNS, metav1.DeleteOptions{})
		}, false},
		{"no service-account-token Secret in kube-system (it would hand over the account's token)", func() error {
			s := secret("kube-system")
			s.Type = corev1.SecretTypeServiceAccountToken
			s.Annotations = map[string]string{corev1.ServiceAccountNameKey: "default"}
			_, err := runner.CoreV1().Secrets("kube-system").Create(ctx, s, metav1.CreateOptions{})
			return err
		}, false},
		{"no Pod in kube-system", func() error {
			_, err := runner.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}, metav1.CreateOptions{})
			return err
		}, false},
		{"no DaemonSet in kube-system", func() error {
			d := ds.DeepCopy()
			d.Namespace = "kube-system"
			_, err := runner.AppsV1().DaemonSets("kube-system").Create(ctx, d, metav1.CreateOptions{})
			return err
		}, false},
		{"no exec in kube-system's pods", func() error { return canI("kube-system", "pods", "exec", "create") }, false},
		{"no pod deleted in kube-system", func() error {
			return runner.CoreV1().Pods("kube-system").Delete(ctx, "kube-apiserver-x", metav1.DeleteOptions{})
		}, false},
		{"no pod deleted in another namespace", func() error { return canI("elsewhere", "pods", "", "delete") }, false},
		{"the synchronizer's pods deleted (resilience, faults)", func() error { return canI(names.Namespace, "pods", "", "delete") }, true},
		{"the run's Pods deleted (its sweep)", func() error { return canI("default", "pods", "", "delete") }, true},
		{"the agent's pods deleted (the run's sweep)", func() error { return canI(agentNS, "pods", "", "delete") }, true},
		{"no exec in the run's Pods' namespace", func() error { return canI("default", "pods", "exec", "create") }, false},
		{"list RoleBindings everywhere (the addon feature)", func() error {
			_, err := runner.RbacV1().RoleBindings("").List(ctx, metav1.ListOptions{})
			return err
		}, true},
		{"no Secret in another namespace", func() error {
			_, err := runner.CoreV1().Secrets("elsewhere").List(ctx, metav1.ListOptions{})
			return err
		}, false},
		{"no Secret anywhere (cluster-wide list)", func() error {
			_, err := runner.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		}, false},
		{"no ClusterRoleBinding made", func() error {
			_, err := runner.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "x"},
				RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"}}, metav1.CreateOptions{})
			return err
		}, false},
		{"no Role created in the synchronizer's namespace", func() error {
			_, err := runner.RbacV1().Roles(names.Namespace).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}, false},
	}
	for _, tt := range tests {
		err := tt.call()
		switch {
		case tt.allowed && err != nil:
			t.Errorf("%s: %v, want allowed", tt.name, err)
		case !tt.allowed && !apierrors.IsForbidden(err):
			t.Errorf("%s: %v, want forbidden", tt.name, err)
		}
	}

	// `keysync conformance cleanup` with the runner's identity: what it may not list
	// cluster-wide (Secrets, Leases) it looks for in the namespaces runs work in, and says so.
	lbl := map[string]string{names.LabelManagedBy: names.ManagedBy, names.LabelRunID: "dead"}
	for _, ns := range []string{names.Namespace, "elsewhere"} {
		s := secret(ns)
		s.Name, s.Labels = "ks-dead-key", lbl
		if _, err := admin.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := leftovers.SweepReport(ctx, runner, leftovers.Options{Fallback: []string{names.Namespace, "default", agentNS}})
	if err != nil {
		t.Fatalf("cleanup as the runner: %v", err)
	}
	if len(r.Removed) != 1 || r.Removed[0].String() != "Secret "+names.Namespace+"/ks-dead-key" {
		t.Errorf("cleanup as the runner removed %v, want the Secret in %s", r.Removed, names.Namespace)
	}
	if len(r.Notes) == 0 {
		t.Error("cleanup as the runner says nothing about where it did not look")
	}
	for _, n := range r.Notes {
		t.Logf("note: %s", n)
	}
	if _, err := admin.CoreV1().Secrets("elsewhere").Get(ctx, "ks-dead-key", metav1.GetOptions{}); err != nil {
		t.Errorf("the Secret outside the runner's namespaces: %v", err)
	}
}
