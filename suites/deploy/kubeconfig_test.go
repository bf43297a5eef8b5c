package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/internal/names"
)

// hack/runner-kubeconfig.sh against a real kube-apiserver (RBAC): the kubeconfig it writes
// authenticates as the runner's ServiceAccount, which may do what a run does and nothing else.
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
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "keysync-node-agent", Namespace: "keysync-suites"},
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
		{"create the agent's namespace and DaemonSet", func() error {
			if _, err := runner.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "keysync-suites"}}, metav1.CreateOptions{}); err != nil {
				return err
			}
			_, err := runner.AppsV1().DaemonSets("keysync-suites").Create(ctx, ds, metav1.CreateOptions{})
			return err
		}, true},
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
}
