package kubetest_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/internal/kubetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestStartServesTheAPIAndWritesAKubeconfig(t *testing.T) {
	s := kubetest.StartT(t)
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubetest"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.CoreV1().Namespaces().Get(ctx, "kubetest", metav1.GetOptions{}); err != nil {
		t.Fatalf("kubeconfig client: %v", err)
	}
	v, err := c.Discovery().ServerVersion()
	if err != nil || !strings.HasPrefix(v.GitVersion, "v1.34.") {
		t.Errorf("server version %v, %v; want the pinned v1.34.x", v, err)
	}
}

func TestStartErrors(t *testing.T) {
	bin := os.Getenv(kubetest.EnvBinDir)
	if bin == "" {
		t.Fatalf("%s is not set: run `make test`", kubetest.EnvBinDir)
	}
	tests := []struct {
		name string
		o    kubetest.Options
		want []string
	}{
		{"no bin dir", kubetest.Options{BinDir: t.TempDir(), Dir: t.TempDir()}, []string{"failed to find etcd", "make k8s-bins"}},
		{"early exit", kubetest.Options{BinDir: bin, Dir: t.TempDir(), ExtraAPIServerArgs: []string{"--no-such-flag"}},
			[]string{"kube-apiserver exited early (exit code 1)", "no-such-flag"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := kubetest.Start(context.Background(), tc.o)
			if err == nil {
				s.Stop()
				t.Fatal("Start succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	t.Setenv(kubetest.EnvBinDir, "")
	if _, err := kubetest.Start(context.Background(), kubetest.Options{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "make test") {
		t.Errorf("unset %s: %v, want a hint to run make test", kubetest.EnvBinDir, err)
	}
}
