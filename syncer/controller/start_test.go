package controller_test

import (
	"context"
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
)

// TestStartSyncsEachSecretOnce: the Secrets that exist at start are synced once, by the full
// sync; the informer's initial Add events must not queue them a second time. A kp-key Secret
// whose first unwrap fails transiently is then retried after the backoff, not at once by
// that second queue entry.
func TestStartSyncsEachSecretOnce(t *testing.T) {
	kube := kubetest.StartT(t)
	client, err := kube.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*corev1.Secret{validConfig(t), kpSecret("flaky", "rk", "QUFB")} {
		s.UID, s.ResourceVersion = "", ""
		if _, err := client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	store, err := keyfile.Open(keyfile.Options{Dir: filepath.Join(root, "keys", "synced"), StagingDir: filepath.Join(root, "stage")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	const backoff = 1500 * time.Millisecond
	u := &scripted{pem: testkeys.PKCS8(t), errs: []error{&kp.Error{StatusCode: 503}}}
	c, err := controller.New(controller.Options{Client: client,
		Reconciler: controller.ReconcilerOptions{Namespace: ns, NodeName: "n1", Store: store, Metrics: metrics.New(), NewUnwrapper: u.factory()},
		// Rand pinned high: the equal-jitter delay is then ~backoff, never backoff/2.
		Retry: controller.RetryPolicy{Base: backoff, Max: backoff, Rand: func() float64 { return 0.99 }}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	waitUntil(t, "ready", c.Ready)
	readyAt := time.Now()
	time.Sleep(backoff / 2)
	u.mu.Lock()
	early := u.calls
	u.mu.Unlock()
	if early != 1 {
		t.Errorf("unwrap calls within %s of ready = %d, want 1 (the full sync's; the retry waits for the backoff)", backoff/2, early)
	}
	file := filepath.Join(store.Dir(), keyfile.Name(ns, "flaky", "kp-key"))
	waitUntil(t, "flaky's file after the backoff", func() bool { _, ok := store.Lookup(filepath.Base(file)); return ok })
	if d := time.Since(readyAt); d < backoff/2 {
		t.Errorf("file after %s, before the backoff of %s", d, backoff)
	}
	u.mu.Lock()
	if u.calls != 2 {
		t.Errorf("unwrap calls = %d, want 2 (one transient failure, one success)", u.calls)
	}
	u.mu.Unlock()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}
