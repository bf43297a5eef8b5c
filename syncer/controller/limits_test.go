package controller_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	kp "github.com/IBM/keyprotect-go-client"
	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
	"github.com/keysync-dev/keysync/syncer/controller"
	"github.com/keysync-dev/keysync/syncer/internal/testkeys"
	"github.com/keysync-dev/keysync/syncer/keyfile"
	"github.com/keysync-dev/keysync/syncer/metrics"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKeySecretRecreatedAsKPKey (issue 13, defect 6): a key Secret deleted and recreated as a
// kp-key under the same name (one queue item: the delete is never seen on its own) loses its
// old files at once, even while the config is missing or unwraps keep failing.
func TestKeySecretRecreatedAsKPKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config bool
		errs   []error
	}{
		{"config missing", false, nil},
		{"unwraps keep failing", true, []error{&kp.Error{StatusCode: 503}, &kp.Error{StatusCode: 503}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &scripted{pem: testkeys.PKCS8(t), errs: tc.errs}
			h := newHarness(t, u.factory())
			if tc.config {
				h.r.SetConfig(validConfig(t))
			} else {
				h.r.SetConfig(nil)
			}
			if err := h.sync(secret("s", "key", map[string][]byte{"a": testkeys.PKCS8(t), "b": testkeys.PKCS8(t)})); err != nil {
				t.Fatal(err)
			}
			if n := len(h.files()); n != 2 {
				t.Fatalf("%d files, want 2", n)
			}
			for range 2 {
				_ = h.sync(kpSecret("s", "rk", "QUFB"))
				if got := keys(h.files()); len(got) != 0 {
					t.Fatalf("files of the former key Secret still there: %v", got)
				}
			}
		})
	}
}

// TestFileLimits (issue 13, defect 6): a Secret with more keys than the per-Secret limit gets
// no file; a Secret that would pass the total gets no new file and keeps what it has; both say
// so in a KeyRejected Event.
func TestFileLimits(t *testing.T) {
	h := &harness{t: t, events: &sink{}, maxPerSecret: 3, maxFiles: 5}
	root := t.TempDir()
	h.keys, h.staging = filepath.Join(root, "keys", "synced"), filepath.Join(root, "stage")
	h.restart()
	t.Cleanup(func() { h.store.Close() })
	many := func(name string, n int) *corev1.Secret {
		data := map[string][]byte{}
		for i := range n {
			data[fmt.Sprintf("k%d", i)] = testkeys.PKCS8(t)
		}
		return secret(name, "key", data)
	}
	lastMsg := func(name string) string {
		for i := len(h.events.events) - 1; i >= 0; i-- {
			if e := h.events.events[i]; e.secret == name {
				return e.reason + ": " + e.msg
			}
		}
		return ""
	}
	if err := h.sync(many("big", 4)); err != nil {
		t.Fatal(err)
	}
	if n := len(h.files()); n != 0 || !strings.Contains(lastMsg("big"), controller.RejectTooManyKeys) {
		t.Errorf("%d files, last Event %q; want none and %s", n, lastMsg("big"), controller.RejectTooManyKeys)
	}
	if err := h.sync(many("a", 3)); err != nil {
		t.Fatal(err)
	}
	b := many("b", 2)
	if err := h.sync(b); err != nil {
		t.Fatal(err)
	}
	if n := len(h.files()); n != 5 {
		t.Fatalf("%d files, want 5", n)
	}
	// b grows by one: 6 > 5. Its two files stay, nothing new appears.
	b3 := many("b", 3)
	b3.UID = b.UID
	if err := h.sync(b3); err != nil {
		t.Fatal(err)
	}
	if n := len(h.files()); n != 5 || !strings.Contains(lastMsg("b"), controller.RejectTooManyFiles) {
		t.Errorf("%d files, last Event %q; want 5 and %s", n, lastMsg("b"), controller.RejectTooManyFiles)
	}
	// A kp-key beyond the total is not even unwrapped.
	u := &scripted{pem: testkeys.PKCS8(t)}
	h.factory = u.factory()
	h.restart()
	h.r.SetConfig(validConfig(t))
	if err := h.sync(kpSecret("kp", "rk", "QUFB")); err != nil {
		t.Fatal(err)
	}
	if u.calls != 0 || !strings.Contains(lastMsg("kp"), controller.RejectTooManyFiles) {
		t.Errorf("%d unwraps, last Event %q; want 0 and %s", u.calls, lastMsg("kp"), controller.RejectTooManyFiles)
	}
}

// TestInsecureKPConfig (issue 13, defect 5): http URLs and a token host that is not IAM's are
// refused (kp-key Secrets wait, both Secrets say why) unless AllowInsecureKP, which is said
// in an Event.
func TestInsecureKPConfig(t *testing.T) {
	env := mockkptest.Start(t) // http on loopback
	pkcs8 := testkeys.PKCS8(t)
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprint("allow=", allow), func(t *testing.T) {
			root := t.TempDir()
			store, err := keyfile.Open(keyfile.Options{Dir: filepath.Join(root, "keys", "synced"), StagingDir: filepath.Join(root, "stage")})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			events := &sink{}
			r, err := controller.NewReconciler(controller.ReconcilerOptions{Namespace: ns, Store: store, Events: events,
				NewUnwrapper: controller.KeyProtect(nil), AllowInsecureKP: allow})
			if err != nil {
				t.Fatal(err)
			}
			s := kpSecret("s", env.RootKeyID, env.Ciphertext(t, pkcs8))
			env.Server.ResetCounters()
			r.SetConfig(configSecret(t, env.Config()))
			if err := r.Sync(context.Background(), "s", s, time.Time{}); err != nil {
				t.Fatal(err)
			}
			cfgEvents, sEvents := events.reasons(kpkey.ConfigSecretName), events.reasons("s")
			if allow {
				if len(cfgEvents) != 1 || cfgEvents[0] != controller.ReasonInsecureConfig || store.Len() != 1 {
					t.Errorf("config Events %v, %d files; want [%s] and the key", cfgEvents, store.Len(), controller.ReasonInsecureConfig)
				}
				return
			}
			if len(cfgEvents) != 1 || cfgEvents[0] != controller.ReasonConfigRejected || store.Len() != 0 ||
				len(sEvents) != 1 || sEvents[0] != controller.ReasonConfigMissing {
				t.Errorf("config Events %v, Secret Events %v, %d files; want [%s], [%s], none",
					cfgEvents, sEvents, store.Len(), controller.ReasonConfigRejected, controller.ReasonConfigMissing)
			}
			if n := env.Server.Requests("token"); n != 0 {
				t.Errorf("the API key went to the insecure endpoint (%d token requests)", n)
			}
		})
	}
}

func TestRetryPolicy(t *testing.T) {
	p := controller.RetryPolicy{Base: time.Second, Max: 8 * time.Second}
	lo, hi := p, p
	lo.Rand = func() float64 { return 0 }
	hi.Rand = func() float64 { return 0.999999 }
	tests := []struct {
		failures   int
		retryAfter time.Duration
		min, max   time.Duration
	}{
		{1, 0, 500 * time.Millisecond, time.Second},
		{2, 0, time.Second, 2 * time.Second},
		{4, 0, 4 * time.Second, 8 * time.Second},
		{50, 0, 4 * time.Second, 8 * time.Second}, // capped, no overflow
		{1, 3 * time.Second, 3 * time.Second, 3*time.Second + 500*time.Millisecond},
		{4, 3 * time.Second, 3 * time.Second, 4500 * time.Millisecond},
		{1, 10 * time.Hour, time.Hour, time.Hour + 500*time.Millisecond}, // MaxRetryAfter
	}
	for _, tc := range tests {
		if d := lo.Delay(tc.failures, tc.retryAfter); d != tc.min {
			t.Errorf("Delay(%d, %v) with rand 0 = %v, want %v", tc.failures, tc.retryAfter, d, tc.min)
		}
		if d := hi.Delay(tc.failures, tc.retryAfter); d < tc.min || d > tc.max {
			t.Errorf("Delay(%d, %v) with rand ~1 = %v, want within [%v, %v]", tc.failures, tc.retryAfter, d, tc.min, tc.max)
		}
	}
	// Real randomness spreads a fleet told to come back in 1s.
	seen := map[time.Duration]bool{}
	for range 100 {
		d := controller.DefaultRetryPolicy().Delay(3, time.Second)
		if d < time.Second {
			t.Fatalf("delay %v before Retry-After", d)
		}
		seen[d.Truncate(10*time.Millisecond)] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct delays in 100: no jitter", len(seen))
	}
}

// TestWriteFailuresAreVisible (issue 13, defect 4): with the keys tree on a full filesystem
// the controller never reports ready, the Secret gets a WriteFailed Event; once space is back
// the retry writes the file and readiness follows.
func TestWriteFailuresAreVisible(t *testing.T) {
	kube := kubetest.StartT(t)
	client, err := kube.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := syscall.Mount("tmpfs", root, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("failed to mount a tmpfs (needs root, as `make test` runs): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(root, syscall.MNT_DETACH) })
	store, err := keyfile.Open(keyfile.Options{Dir: filepath.Join(root, "keys", "synced"), StagingDir: filepath.Join(root, "stage")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	filler := filepath.Join(root, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{4096, 512, 64, 1} {
		for {
			if _, err := f.Write(make([]byte, n)); err != nil {
				break
			}
		}
	}
	f.Close()
	s := secret("s", "key", map[string][]byte{"k": testkeys.PKCS8(t)})
	s.UID, s.ResourceVersion = "", ""
	if _, err := client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := controller.New(controller.Options{Client: client,
		Reconciler: controller.ReconcilerOptions{Namespace: ns, NodeName: "n1", Store: store, Metrics: metrics.New()},
		Retry:      controller.RetryPolicy{Base: 50 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	waitEvent(t, client, "s", controller.ReasonWriteFailed)
	time.Sleep(300 * time.Millisecond)
	if c.Ready() {
		t.Errorf("ready while no key file could be written")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "ready after space came back", c.Ready)
	if store.Count() != 1 {
		t.Errorf("%d files after recovery, want 1", store.Count())
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
}
