package controller_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kp "github.com/IBM/keyprotect-go-client"
	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
	"github.com/keysync-dev/keysync/syncer/controller"
	"github.com/keysync-dev/keysync/syncer/internal/testkeys"
	"github.com/keysync-dev/keysync/syncer/keyfile"
	"github.com/keysync-dev/keysync/syncer/metrics"
	"github.com/keysync-dev/keysync/syncer/secretkeys"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

const ns = "image-key-synchronizer"

type event struct{ secret, typ, reason, msg string }

// sink records Events the way the API server would receive them.
type sink struct {
	mu     sync.Mutex
	events []event
}

func (s *sink) Event(obj runtime.Object, typ, reason, msg string) {
	sec := obj.(*corev1.Secret)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, event{sec.Name, typ, reason, msg})
}

func (s *sink) reasons(secret string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		if e.secret == secret {
			out = append(out, e.reason)
		}
	}
	return out
}

type harness struct {
	t       *testing.T
	keys    string
	staging string
	store   *keyfile.Store
	events  *sink
	metrics *metrics.Metrics
	r       *controller.Reconciler
	factory controller.UnwrapperFactory
	// limits for the next restart (0: defaults)
	maxPerSecret, maxFiles int
}

func newHarness(t *testing.T, factory controller.UnwrapperFactory) *harness {
	t.Helper()
	root := t.TempDir()
	h := &harness{t: t, keys: filepath.Join(root, "crio", "keys", "synced"),
		staging: filepath.Join(root, "crio", ".keysync-staging"), events: &sink{}, factory: factory}
	h.restart()
	t.Cleanup(func() { h.store.Close() })
	return h
}

// restart builds a new store and reconciler on the same directories (a process restart).
func (h *harness) restart() {
	h.t.Helper()
	if h.store != nil {
		h.store.Close()
	}
	var err error
	h.store, err = keyfile.Open(keyfile.Options{Dir: h.keys, StagingDir: h.staging})
	if err != nil {
		h.t.Fatal(err)
	}
	h.metrics = metrics.New()
	// mockkp serves http on loopback: the labs' --allow-insecure-kp.
	h.r, err = controller.NewReconciler(controller.ReconcilerOptions{Namespace: ns, NodeName: "node-1",
		Store: h.store, Metrics: h.metrics, Events: h.events, NewUnwrapper: h.factory, UnwrapTimeout: 5 * time.Second,
		AllowInsecureKP: true, MaxFilesPerSecret: h.maxPerSecret, MaxFiles: h.maxFiles})
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) sync(sec *corev1.Secret) error {
	h.t.Helper()
	return h.r.Sync(context.Background(), sec.Name, sec, time.Now())
}

func (h *harness) files() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(h.keys)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(h.keys, e.Name()))
		if err != nil {
			h.t.Fatal(err)
		}
		out[e.Name()] = string(data)
	}
	return out
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

var uidSeq int

func secret(name, typ string, data map[string][]byte) *corev1.Secret {
	uidSeq++
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(fmt.Sprintf("uid-%s-%d", name, uidSeq)),
			ResourceVersion: fmt.Sprint(uidSeq)},
		Type: corev1.SecretType(typ), Data: data,
	}
}

func configSecret(t testing.TB, c kpkey.Config) *corev1.Secret {
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return secret(kpkey.ConfigSecretName, "Opaque", map[string][]byte{kpkey.ConfigKey: data})
}

func kpSecret(name, rootKeyID, ct string) *corev1.Secret {
	return secret(name, kpkey.SecretTypeKPKey, map[string][]byte{kpkey.RootKeyIDKey: []byte(rootKeyID), kpkey.CiphertextKey: []byte(ct)})
}

// TestBadInputs: every bad input gets its Event reason, writes no file, and leaves the other
// keys alone.
func TestBadInputs(t *testing.T) {
	env := mockkptest.Start(t)
	otherInstance := env.Config()
	otherInstance.InstanceID = "99999999-2222-4333-8444-555555555555"
	pkcs8 := testkeys.PKCS8(t)
	tampered := base64.StdEncoding.EncodeToString([]byte(`{"ciphertext":"AAAA","iv":"AAAA","version":"4.0.0","handle":"` + env.RootKeyID + `"}`))
	type tc struct {
		name   string
		config *corev1.Secret // nil: the valid mockkp config
		setup  func(t *testing.T)
		sec    func(t *testing.T) *corev1.Secret
		reason string
	}
	key := func(v []byte) func(*testing.T) *corev1.Secret {
		return func(*testing.T) *corev1.Secret {
			return secret("bad", kpkey.SecretTypeKey, map[string][]byte{"key.pem": v})
		}
	}
	kpk := func(rk, ct string) func(*testing.T) *corev1.Secret {
		return func(*testing.T) *corev1.Secret { return kpSecret("bad", rk, ct) }
	}
	wrapped := func(data []byte) func(*testing.T) *corev1.Secret {
		return func(t *testing.T) *corev1.Secret { return kpSecret("bad", env.RootKeyID, env.Ciphertext(t, data)) }
	}
	badJSON := secret(kpkey.ConfigSecretName, "Opaque", map[string][]byte{kpkey.ConfigKey: []byte(`{"keyprotect-url": `)})
	goodJSON, _ := json.Marshal(env.Config())
	junkJSON := secret(kpkey.ConfigSecretName, "Opaque", map[string][]byte{kpkey.ConfigKey: append(goodJSON, " junk"...)})
	noAPIKey := env.Config()
	noAPIKey.APIKey = ""
	tests := []tc{
		{name: "empty value", sec: key([]byte{}), reason: controller.ReasonKeyRejected},
		{name: "no data", sec: func(*testing.T) *corev1.Secret { return secret("bad", "key", nil) }, reason: controller.ReasonKeyRejected},
		{name: "public key", sec: key(testkeys.Public(t)), reason: controller.ReasonKeyRejected},
		{name: "SEC1 EC PEM with trailing text", sec: key(append(testkeys.SEC1(t), "junk"...)), reason: controller.ReasonKeyRejected},
		{name: "encrypted PEM", sec: key(testkeys.Encrypted(t)), reason: controller.ReasonKeyRejected},
		{name: "base64 of a PEM", sec: key(testkeys.Base64(t)), reason: controller.ReasonKeyRejected},
		{name: "leading spaces", sec: key(testkeys.LeadingSpaces(t)), reason: controller.ReasonKeyRejected},
		{name: "PEM missing its END line", sec: key(bytes.Split(pkcs8, []byte("-----END"))[0]), reason: controller.ReasonKeyRejected},
		{name: "huge value", sec: key(bytes.Repeat(pkcs8, 1000)), reason: controller.ReasonKeyRejected},
		{name: "data key with ../", sec: func(*testing.T) *corev1.Secret {
			return secret("bad", "key", map[string][]byte{"../../etc/crio/crio.conf": pkcs8})
		}, reason: controller.ReasonKeyRejected},
		{name: "JSON that is not a JWK", sec: key([]byte(`{"kty":"none"}`)), reason: controller.ReasonKeyRejected},
		{name: "missing rootkeyid", sec: kpk("", "QUFB"), reason: controller.ReasonKeyRejected},
		{name: "missing ciphertext", sec: kpk(env.RootKeyID, ""), reason: controller.ReasonKeyRejected},
		{name: "bad base64 ciphertext", sec: kpk(env.RootKeyID, "not base64!"), reason: controller.ReasonKeyRejected},
		{name: "oversized ciphertext", sec: kpk(env.RootKeyID, strings.Repeat("QUFB", 4*secretkeys.MaxKeySize/4+1)), reason: controller.ReasonKeyRejected},
		{name: "unknown root key", sec: func(t *testing.T) *corev1.Secret {
			return kpSecret("bad", "00000000-0000-4000-8000-000000000000", env.Ciphertext(t, pkcs8))
		}, reason: controller.ReasonUnwrapFailed},
		{name: "ciphertext not from Key Protect", sec: kpk(env.RootKeyID, tampered), reason: controller.ReasonUnwrapFailed},
		{name: "wrong instance", config: configSecret(t, otherInstance), sec: wrapped(pkcs8), reason: controller.ReasonUnwrapFailed},
		{name: "unwraps to a public key", sec: wrapped(testkeys.Public(t)), reason: controller.ReasonKeyRejected},
		{name: "unwraps to an encrypted PEM", sec: wrapped(testkeys.Encrypted(t)), reason: controller.ReasonKeyRejected},
		{name: "config missing", config: secret("unrelated", "Opaque", nil), sec: wrapped(pkcs8), reason: controller.ReasonConfigMissing},
		{name: "config invalid JSON", config: badJSON, sec: wrapped(pkcs8), reason: controller.ReasonConfigMissing},
		{name: "config without apikey", config: configSecret(t, noAPIKey), sec: wrapped(pkcs8), reason: controller.ReasonConfigMissing},
		{name: "config with junk after the JSON", config: junkJSON, sec: wrapped(pkcs8), reason: controller.ReasonConfigMissing},
		{name: "KP 404 on every attempt", setup: func(t *testing.T) {
			addFault(t, env, mockkp.Fault{Op: mockkp.OpUnwrap, Kind: mockkp.FaultStatus, Status: http.StatusNotFound})
		}, sec: wrapped(pkcs8), reason: controller.ReasonUnwrapFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, controller.KeyProtect(nil))
			cfg := tc.config
			if cfg == nil {
				cfg = configSecret(t, env.Config())
			}
			if cfg.Name == kpkey.ConfigSecretName {
				h.r.SetConfig(cfg)
			} else {
				h.r.SetConfig(nil)
			}
			bystander := secret("good", "key", map[string][]byte{"a.pem": pkcs8})
			if err := h.sync(bystander); err != nil {
				t.Fatal(err)
			}
			goodFile := filepath.Join(h.keys, keyfile.Name(ns, "good", "a.pem"))
			ino := inode(t, goodFile)
			sec := tc.sec(t)
			if tc.setup != nil {
				tc.setup(t)
			}
			if err := h.sync(sec); err != nil {
				t.Fatalf("Sync returned %v; a permanent problem must not be retried", err)
			}
			if got := h.events.reasons("bad"); len(got) == 0 || got[len(got)-1] != tc.reason {
				t.Errorf("events %v, want %s", got, tc.reason)
			}
			files := h.files()
			if len(files) != 1 || files[filepath.Base(goodFile)] != string(pkcs8) {
				t.Errorf("keys dir holds %d files, want only the bystander's", len(files))
			}
			if inode(t, goodFile) != ino {
				t.Errorf("bystander file was rewritten")
			}
			// A resync neither repeats the Event nor calls Key Protect again.
			before, calls := len(h.events.reasons("bad")), env.Server.Requests(mockkp.OpUnwrap)
			if err := h.sync(sec); err != nil {
				t.Fatal(err)
			}
			if len(h.events.reasons("bad")) != before || env.Server.Requests(mockkp.OpUnwrap) != calls {
				t.Errorf("resync repeated an Event or an unwrap call")
			}
			for _, e := range h.events.events {
				if strings.Contains(e.msg, "PRIVATE KEY") || strings.Contains(e.msg, env.APIKey) {
					t.Errorf("Event leaks key material: %s", e.msg)
				}
			}
		})
	}
}

func addFault(t *testing.T, env *mockkptest.Env, f mockkp.Fault) {
	t.Helper()
	if err := env.Server.AddFault(f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Server.ClearFaults)
}

func TestGoodInputs(t *testing.T) {
	env := mockkptest.Start(t)
	sec1, rsa, pkcs8 := testkeys.SEC1(t), testkeys.RSA(t), testkeys.PKCS8(t)
	tests := []struct {
		name   string
		setup  func(t *testing.T)
		sec    func(t *testing.T) *corev1.Secret
		want   string // file content prefix
		unwrap int64  // unwrap requests expected at mockkp
	}{
		{name: "PKCS#8", sec: func(*testing.T) *corev1.Secret { return secret("s", "key", map[string][]byte{"k": pkcs8}) }, want: "-----BEGIN PRIVATE KEY-----"},
		{name: "PKCS#1", sec: func(*testing.T) *corev1.Secret { return secret("s", "key", map[string][]byte{"k": rsa}) }, want: "-----BEGIN RSA PRIVATE KEY-----"},
		{name: "CRLF line ends (ocicrypt accepts them, so CRI-O does)", sec: func(*testing.T) *corev1.Secret {
			return secret("s", "key", map[string][]byte{"k": testkeys.CRLF(t)})
		}, want: "-----BEGIN PRIVATE KEY-----"},
		{name: "SEC1 EC PEM is normalised to PKCS#8", sec: func(*testing.T) *corev1.Secret { return secret("s", "key", map[string][]byte{"k": sec1}) }, want: "-----BEGIN PRIVATE KEY-----"},
		// PKCS#7 layers need the recipient's certificate beside its key; CRI-O reads both.
		{name: "x509 certificate is written as it is", sec: func(t *testing.T) *corev1.Secret {
			return secret("s", "key", map[string][]byte{"cert": testkeys.Certificate(t)})
		}, want: "-----BEGIN CERTIFICATE-----"},
		{name: "kp-key", sec: func(t *testing.T) *corev1.Secret { return kpSecret("s", env.RootKeyID, env.Ciphertext(t, pkcs8)) }, want: "-----BEGIN PRIVATE KEY-----", unwrap: 1},
		{name: "kp-key with extra fields", sec: func(t *testing.T) *corev1.Secret {
			s := kpSecret("s", env.RootKeyID, env.Ciphertext(t, pkcs8))
			s.Data["note"] = []byte("ignored")
			return s
		}, want: "-----BEGIN PRIVATE KEY-----", unwrap: 1},
		{name: "kp-key SEC1", sec: func(t *testing.T) *corev1.Secret { return kpSecret("s", env.RootKeyID, env.Ciphertext(t, sec1)) }, want: "-----BEGIN PRIVATE KEY-----", unwrap: 1},
		{name: "KP 500 then success (client retry)", setup: func(t *testing.T) {
			addFault(t, env, mockkp.Fault{Op: mockkp.OpUnwrap, Kind: mockkp.FaultStatus, Status: 500})
		}, sec: func(t *testing.T) *corev1.Secret { return kpSecret("s", env.RootKeyID, env.Ciphertext(t, pkcs8)) }, want: "-----BEGIN PRIVATE KEY-----", unwrap: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, controller.KeyProtect(nil))
			h.r.SetConfig(configSecret(t, env.Config()))
			sec := tc.sec(t)
			if tc.setup != nil {
				tc.setup(t)
			}
			calls := env.Server.Requests(mockkp.OpUnwrap)
			if err := h.sync(sec); err != nil {
				t.Fatal(err)
			}
			files := h.files()
			if len(files) != 1 {
				t.Fatalf("%d files, want 1", len(files))
			}
			for name, data := range files {
				if !strings.HasPrefix(data, tc.want) || !keyfile.IsName(name) {
					t.Errorf("file %s starts %.30q, want %q", name, data, tc.want)
				}
			}
			if got := env.Server.Requests(mockkp.OpUnwrap) - calls; got != tc.unwrap {
				t.Errorf("unwrap requests %d, want %d", got, tc.unwrap)
			}
			if got := h.events.reasons("s"); len(got) != 1 || got[0] != controller.ReasonKeySynced {
				t.Errorf("events %v, want [KeySynced]", got)
			}
			if v := testutil.ToFloat64(h.metrics.KeysOnDisk); v != 1 {
				t.Errorf("keys_on_disk %v, want 1", v)
			}
			if n := testutil.CollectAndCount(h.metrics.SyncLatency); n != 1 {
				t.Errorf("latency histogram has %d series", n)
			}
		})
	}
}

func TestUpdateDeleteAndPruneOnlyOwnFiles(t *testing.T) {
	h := newHarness(t, nil)
	k1, k2 := testkeys.PKCS8(t), testkeys.PKCS8(t)
	s := secret("s", "key", map[string][]byte{"a": k1, "b": k1})
	if err := h.sync(s); err != nil {
		t.Fatal(err)
	}
	fa, fb := keyfile.Name(ns, "s", "a"), keyfile.Name(ns, "s", "b")
	inoB := inode(t, filepath.Join(h.keys, fb))
	// A person's file in the tree: never touched.
	if err := os.WriteFile(filepath.Join(h.keys, "admin.pem"), k2, 0o600); err != nil {
		t.Fatal(err)
	}
	// Update: a changes, b stays, c appears.
	s2 := secret("s", "key", map[string][]byte{"a": k2, "b": k1, "c": k2})
	if err := h.sync(s2); err != nil {
		t.Fatal(err)
	}
	files := h.files()
	if files[fa] != string(k2) || files[fb] != string(k1) || files[keyfile.Name(ns, "s", "c")] != string(k2) {
		t.Errorf("after update: %d files with wrong content", len(files))
	}
	if inode(t, filepath.Join(h.keys, fb)) != inoB {
		t.Errorf("unchanged b was rewritten")
	}
	// Removing a data key removes its file.
	s3 := secret("s", "key", map[string][]byte{"b": k1})
	if err := h.sync(s3); err != nil {
		t.Fatal(err)
	}
	if len(h.files()) != 2 {
		t.Errorf("after key removal: %v", keys(h.files()))
	}
	// Restart: a full resync with Secret s gone prunes its file, keeps admin.pem.
	other := secret("t", "key", map[string][]byte{"x": k2})
	if err := h.sync(other); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if err := h.r.Prune(map[string]bool{"t": true}); err != nil {
		t.Fatal(err)
	}
	got := keys(h.files())
	want := []string{"admin.pem", keyfile.Name(ns, "t", "x")}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("after prune %v, want %v", got, want)
	}
	// Delete.
	if err := h.r.Sync(context.Background(), "t", nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := keys(h.files()); len(got) != 1 || got[0] != "admin.pem" {
		t.Errorf("after delete %v", got)
	}
	// Type changed away from key: files go.
	if err := h.sync(secret("u", "key", map[string][]byte{"x": k1})); err != nil {
		t.Fatal(err)
	}
	if err := h.sync(secret("u", "Opaque", map[string][]byte{"x": k1})); err != nil {
		t.Fatal(err)
	}
	if got := keys(h.files()); len(got) != 1 {
		t.Errorf("after type change %v", got)
	}
}

// TestNamespaceChange: restarted with another --namespace, the synchronizer's full resync
// removes the files it wrote for the old namespace (they are its own) and keeps foreign ones.
func TestNamespaceChange(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.sync(secret("s", "key", map[string][]byte{"k": testkeys.PKCS8(t)})); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.keys, "admin.pem"), testkeys.PKCS8(t), 0o600); err != nil {
		t.Fatal(err)
	}
	h.store.Close()
	store, err := keyfile.Open(keyfile.Options{Dir: h.keys, StagingDir: h.staging})
	if err != nil {
		t.Fatal(err)
	}
	h.store = store
	r, err := controller.NewReconciler(controller.ReconcilerOptions{Namespace: "other-ns", Store: store, Events: h.events})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Prune(map[string]bool{"s": true}); err != nil {
		t.Fatal(err)
	}
	if got := keys(h.files()); len(got) != 1 || got[0] != "admin.pem" {
		t.Errorf("after the namespace change: %v, want only admin.pem", got)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// scripted is an Unwrapper that answers from a script: the point of these tests is the retry
// logic, not Key Protect.
type scripted struct {
	mu    sync.Mutex
	calls int
	errs  []error // errs[i] answers call i; past the end: success
	pem   []byte
}

func (s *scripted) Unwrap(ctx context.Context, _, _ string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls <= len(s.errs) && s.errs[s.calls-1] != nil {
		return nil, s.errs[s.calls-1]
	}
	return s.pem, nil
}

func (s *scripted) factory() controller.UnwrapperFactory {
	return func(kpkey.Config) (controller.Unwrapper, error) { return s, nil }
}

func validConfig(t *testing.T) *corev1.Secret {
	return configSecret(t, kpkey.Config{URL: "https://kp.invalid", InstanceID: "i", APIKey: "k"})
}

func TestTransientErrorsKeepThePreviousFileAndRetry(t *testing.T) {
	k1, k2 := testkeys.PKCS8(t), testkeys.PKCS8(t)
	tests := []struct {
		name      string
		err       error
		transient bool
	}{
		{"429", &kp.Error{StatusCode: 429, Message: "slow down"}, true},
		{"500", &kp.Error{StatusCode: 500}, true},
		{"503", &kp.Error{StatusCode: 503}, true},
		{"timeout", fmt.Errorf("failed to unwrap: %w", context.DeadlineExceeded), true},
		{"connection", &kp.URLError{Err: errors.New("connection refused")}, true},
		{"400 from Key Protect", kpErr(400, "BAD_BODY_ERR"), false},
		{"403 from Key Protect", kpErr(403, "UNAUTHORIZED_ERR"), false},
		{"404 from Key Protect", kpErr(404, "KEY_NOT_FOUND_ERR"), false},
		{"409 from Key Protect", kpErr(409, "KEY_ACTION_INVALID_STATE_ERR"), false},
		{"410 from Key Protect", kpErr(410, "KEY_DELETED_ERR"), false},
		{"422 from Key Protect", kpErr(422, "UNPROCESSABLE_CIPHERTEXT_ERR"), false},
		{"not base64 plaintext", fmt.Errorf("failed: %w", kpkey.ErrPlaintextNotBase64), false},
		{"404 HTML page of a gateway", &kp.Error{StatusCode: 404, BodyContent: []byte("<html><body>Not Found</body></html>")}, true},
		{"422 without a body", &kp.Error{StatusCode: 422}, true},
		{"401 from Key Protect", kpErr(401, "UNAUTHORIZED_ERR"), true},
		{"IAM HTML 503", &kpkey.TokenError{Status: 503, What: "HTML page"}, true},
		{"IAM rejects the API key", &kpkey.TokenError{Status: 400, What: "JSON error", Code: "BXNIM0415E"}, true},
		{"JSON syntax error (official client, IAM HTML page)", fmt.Errorf("failed: %w", &json.SyntaxError{Offset: 1}), true},
		{"unknown error", errors.New("something else"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := &scripted{pem: k1}
			h := newHarness(t, u.factory())
			h.r.SetConfig(validConfig(t))
			if err := h.sync(kpSecret("s", "rk", "QUFB")); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(h.keys, keyfile.Name(ns, "s", "kp-key"))
			// New version; Key Protect fails once.
			u.errs, u.calls, u.pem = []error{tc.err}, 0, k2
			v2 := kpSecret("s", "rk", "QkJC")
			err := h.sync(v2)
			if (err != nil) != tc.transient {
				t.Fatalf("Sync = %v, want retry %v", err, tc.transient)
			}
			if got := h.events.reasons("s"); got[len(got)-1] != controller.ReasonUnwrapFailed {
				t.Errorf("events %v, want UnwrapFailed last", got)
			}
			data, statErr := os.ReadFile(file)
			if tc.transient {
				if statErr != nil || string(data) != string(k1) {
					t.Fatalf("previous file not kept through a transient error: %v", statErr)
				}
				// The retry succeeds and replaces it.
				if err := h.sync(v2); err != nil {
					t.Fatal(err)
				}
				if data, _ := os.ReadFile(file); string(data) != string(k2) {
					t.Errorf("retry did not write the new key")
				}
				if u.calls != 2 {
					t.Errorf("unwrap calls %d, want 2", u.calls)
				}
			} else {
				if !os.IsNotExist(statErr) {
					t.Errorf("file of a permanently failing version still present: %v", statErr)
				}
				if err := h.sync(v2); err != nil || u.calls != 1 {
					t.Errorf("permanent failure retried: %v, %d calls", err, u.calls)
				}
			}
			if tc.transient != controller.Transient(tc.err) {
				t.Errorf("Transient(%v) = %v", tc.err, !tc.transient)
			}
		})
	}
}

// kpErr is a Key Protect error answer with its JSON envelope, as the official client returns it.
func kpErr(status int, code string) *kp.Error {
	return &kp.Error{StatusCode: status, BodyContent: []byte(`{"metadata":{"collectionType":"application/vnd.ibm.kms.error+json","collectionTotal":1},` +
		`"resources":[{"errorMsg":"x","reasons":[{"code":"` + code + `","message":"x","status":` + fmt.Sprint(status) + `}]}]}`)}
}

func TestUnwrapOncePerSecretVersion(t *testing.T) {
	pem := testkeys.PKCS8(t)
	u := &scripted{pem: pem}
	h := newHarness(t, u.factory())
	h.r.SetConfig(validConfig(t))
	secs := []*corev1.Secret{kpSecret("a", "rk", "QUFB"), kpSecret("b", "rk", "QkJC")}
	for round := range 10 {
		if round == 5 {
			h.restart() // a process restart loses every in-memory cache
			h.r.SetConfig(validConfig(t))
		}
		for _, s := range secs {
			if err := h.sync(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	if u.calls != 2 {
		t.Errorf("unwrap calls %d over 10 resyncs and a restart, want 2", u.calls)
	}
	// A new resourceVersion with the same content does not unwrap either; new content does.
	same := secs[0].DeepCopy()
	same.ResourceVersion = "999"
	changed := kpSecret("a", "rk", "Q0ND")
	changed.UID = secs[0].UID
	for _, s := range []*corev1.Secret{same, changed} {
		if err := h.sync(s); err != nil {
			t.Fatal(err)
		}
	}
	if u.calls != 3 {
		t.Errorf("unwrap calls %d, want 3", u.calls)
	}
}

func TestConfigChangesApplyLive(t *testing.T) {
	env := mockkptest.Start(t)
	pkcs8 := testkeys.PKCS8(t)
	h := newHarness(t, controller.KeyProtect(nil))
	h.r.SetConfig(nil)
	s := kpSecret("s", env.RootKeyID, env.Ciphertext(t, pkcs8))
	if err := h.sync(s); err != nil {
		t.Fatal(err)
	}
	if got := h.events.reasons("s"); len(got) != 1 || got[0] != controller.ReasonConfigMissing {
		t.Fatalf("events %v, want [ConfigMissing]", got)
	}
	wrong := env.Config()
	wrong.APIKey = "wrong-key"
	if !h.r.SetConfig(configSecret(t, wrong)) {
		t.Fatal("SetConfig did not report a change")
	}
	if err := h.sync(s); err == nil {
		t.Fatalf("a rejected API key says nothing about the key: want a retry")
	}
	if got := h.events.reasons("s"); got[len(got)-1] != controller.ReasonUnwrapFailed {
		t.Fatalf("events %v, want UnwrapFailed last", got)
	}
	if h.r.SetConfig(configSecret(t, wrong)) {
		t.Errorf("same config reported as a change")
	}
	if !h.r.SetConfig(configSecret(t, env.Config())) {
		t.Fatal("SetConfig did not report the fix")
	}
	if err := h.sync(s); err != nil {
		t.Fatal(err)
	}
	if got := h.files(); len(got) != 1 {
		t.Errorf("after config fix: %d files, want 1", len(got))
	}
}
