package controller_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	kp "github.com/IBM/keyprotect-go-client"
	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/syncer/controller"
	"github.com/keysync-dev/keysync/syncer/internal/testkeys"
	"github.com/keysync-dev/keysync/syncer/keyfile"
	"github.com/keysync-dev/keysync/syncer/metrics"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestControllerAgainstAPIServer runs the Controller in-process against a real kube-apiserver
// with a scripted unwrapper: readiness waits for the full sync, transient failures are retried
// with exponential backoff, permanent ones are not, and Events reach the API server.
func TestControllerAgainstAPIServer(t *testing.T) {
	kube := kubetest.StartT(t)
	client, err := kube.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	create := func(s *corev1.Secret) {
		t.Helper()
		s.UID, s.ResourceVersion = "", ""
		if _, err := client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pre := testkeys.PKCS8(t)
	create(secret("pre", "key", map[string][]byte{"k": pre}))
	create(validConfig(t))

	root := t.TempDir()
	store, err := keyfile.Open(keyfile.Options{Dir: filepath.Join(root, "keys", "synced"), StagingDir: filepath.Join(root, "stage")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	u := &scripted{pem: testkeys.PKCS8(t), errs: []error{
		&kp.Error{StatusCode: 503}, &kp.Error{StatusCode: 429}, &kp.Error{StatusCode: 500}, &kp.Error{StatusCode: 502},
	}}
	c, err := controller.New(controller.Options{Client: client,
		Reconciler: controller.ReconcilerOptions{Namespace: ns, NodeName: "n1", Store: store, Metrics: metrics.New(), NewUnwrapper: u.factory()},
		Retry:      controller.RetryPolicy{Base: 40 * time.Millisecond, Max: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Ready() {
		t.Fatal("ready before Run")
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	waitUntil(t, "ready", func() bool { return c.Ready() })
	if _, err := os.Stat(filepath.Join(store.Dir(), keyfile.Name(ns, "pre", "k"))); err != nil {
		t.Errorf("ready before the existing Secret's file was written: %v", err)
	}

	start := time.Now()
	create(kpSecret("flaky", "rk", "QUFB"))
	file := filepath.Join(store.Dir(), keyfile.Name(ns, "flaky", "kp-key"))
	waitUntil(t, "flaky's file", func() bool { _, err := os.Stat(file); return err == nil })
	// Backoff of at least half of 40+80+160+320 ms (equal jitter) before the fifth attempt.
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("file after %v: retries did not back off", d)
	}
	u.mu.Lock()
	calls := u.calls
	u.errs = append(u.errs, make([]error, calls-len(u.errs))...)
	u.errs = append(u.errs, kpErr(404, "KEY_NOT_FOUND_ERR"))
	u.mu.Unlock()
	if calls != 5 {
		t.Errorf("unwrap calls %d, want 5 (4 transient failures, then success)", calls)
	}
	create(kpSecret("gone", "rk", "QkJC"))
	waitEvent(t, client, "gone", controller.ReasonUnwrapFailed)
	time.Sleep(300 * time.Millisecond)
	u.mu.Lock()
	if u.calls != 6 {
		t.Errorf("unwrap calls %d, want 6: a 404 is not retried", u.calls)
	}
	u.mu.Unlock()
	waitEvent(t, client, "flaky", controller.ReasonUnwrapFailed)
	waitEvent(t, client, "flaky", controller.ReasonKeySynced)
	waitEvent(t, client, "pre", controller.ReasonKeySynced)

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitEvent(t *testing.T, client kubernetes.Interface, name, reason string) {
	t.Helper()
	waitUntil(t, "Event "+reason+" on "+name, func() bool {
		list, err := client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false
		}
		for _, e := range list.Items {
			if e.Reason == reason && e.Source.Host == "n1" {
				return true
			}
		}
		return false
	})
}
