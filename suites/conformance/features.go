package conformance

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/internal/events"
	"github.com/keysync-dev/keysync/suites/internal/keytree"
	"github.com/keysync-dev/keysync/suites/internal/kp"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
	"github.com/keysync-dev/keysync/suites/internal/tracker"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// keyDataKey is the data entry name the suites use in key Secrets.
const keyDataKey = "key.pem"

// fixtureOnceArg makes a fixture's program print its marker and exit (fixtures/cmd/marker).
const fixtureOnceArg = "-once"

// Features returns every feature in suite order, each with fresh state (call it once per
// run). Every feature ends with the hygiene assessment.
func Features() []Feature {
	fs := []Feature{
		featureNoKey(),
		featureKeySecret(),
		featureKPKey(),
		featureRevocation(),
		featureRotation(),
		featureBadInput(),
		featureHygiene(),
		featureAddon(),
		featurePod(),
		featureNetwork(),
		featureIsolation(),
		featureResilience(), // disruptive: last
	}
	for i := range fs {
		fs[i].Assess = append(fs[i].Assess, Step{Name: "hygiene: keys tree holds only usable keys and a plain image pulls", Fn: assessHygiene})
	}
	return fs
}

// FeaturesIn returns the features of one area.
func FeaturesIn(area Area) []Feature {
	var out []Feature
	for _, f := range Features() {
		if f.Area == area {
			out = append(out, f)
		}
	}
	return out
}

// scope is a feature's per-run state: its tracker and Secret client.
type scope struct {
	tr      tracker.Tracker
	secrets secrets.Client
}

// newScope starts a feature: it records cleanup on t (so a fatal Setup still cleans up) and
// makes Secret deletions wait for the synchronizer to remove the Secret's key files.
func newScope(ctx context.Context, t T, c *Context) *scope {
	s := &scope{}
	s.secrets = secrets.Client{Clientset: c.Client, Tracker: &s.tr,
		AfterDelete: func(ctx context.Context, sec *corev1.Secret) error { return c.waitKeysGone(ctx, sec) }}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*c.syncTimeout())
		defer cancel()
		if err := s.tr.Cleanup(cctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return s
}

// waitKeysGone waits until no node holds a file with the bytes of a deleted key Secret.
func (c *Context) waitKeysGone(ctx context.Context, s *corev1.Secret) error {
	if s.Type != corev1.SecretType(kpkey.SecretTypeKey) {
		return nil
	}
	for _, data := range s.Data {
		norm, err := crikeys.Normalize(data)
		if err != nil {
			continue // never written
		}
		if err := c.waitNoFile(ctx, norm); err != nil {
			return err
		}
	}
	return nil
}

func (c *Context) nodes(ctx context.Context, t T) []string {
	t.Helper()
	nodes, err := c.Driver.Nodes(ctx)
	if err != nil {
		t.Fatalf("failed to list nodes: %v", err)
	}
	if len(nodes) == 0 {
		t.Fatalf("the node driver %s lists no nodes", c.Driver.Name())
	}
	return nodes
}

// waitFile waits until every node has a file holding want and returns one entry per node.
func (c *Context) waitFile(ctx context.Context, want []byte) (map[string]nodedriver.Entry, error) {
	nodes, err := c.Driver.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to list nodes: %w", err)
	}
	got := map[string]nodedriver.Entry{}
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, c.pollInterval(), c.syncTimeout(), true, func(ctx context.Context) (bool, error) {
		for _, n := range nodes {
			if _, ok := got[n]; ok {
				continue
			}
			files, err := keytree.Files(ctx, c.Driver, n, want)
			if err != nil {
				lastErr = err
				return false, nil
			}
			if len(files) > 0 {
				got[n] = files[0]
			}
		}
		return len(got) == len(nodes), nil
	})
	if err != nil {
		missing := []string{}
		for _, n := range nodes {
			if _, ok := got[n]; !ok {
				missing = append(missing, n)
			}
		}
		return nil, fmt.Errorf("key file did not appear on nodes %v within %s (last error: %v): %w", missing, c.syncTimeout(), lastErr, err)
	}
	return got, nil
}

// waitNoFile waits until no node has a file holding data.
func (c *Context) waitNoFile(ctx context.Context, data []byte) error {
	nodes, err := c.Driver.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("failed to list nodes: %w", err)
	}
	var left []string
	err = wait.PollUntilContextTimeout(ctx, c.pollInterval(), c.syncTimeout(), true, func(ctx context.Context) (bool, error) {
		left = left[:0]
		for _, n := range nodes {
			files, err := keytree.Files(ctx, c.Driver, n, data)
			if err != nil {
				return false, nil
			}
			for _, f := range files {
				left = append(left, n+":"+f.Path)
			}
		}
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("key files still present after %s: %v: %w", c.syncTimeout(), left, err)
	}
	return nil
}

func mustNormalize(t T, pemData []byte) []byte {
	t.Helper()
	norm, err := crikeys.Normalize(pemData)
	if err != nil {
		t.Fatalf("fixture key is not a private key CRI-O accepts: %v", err)
	}
	return norm
}

// pullEverywhere pulls ref on every node and fails the test on error.
func (c *Context) pullEverywhere(ctx context.Context, t T, ref string) {
	t.Helper()
	for _, n := range c.nodes(ctx, t) {
		if err := c.Driver.PullImage(ctx, n, ref); err != nil {
			t.Fatalf("node %s: pulling %s failed: %v", n, ref, err)
		}
	}
}

// pullFailsEverywhere pulls ref on every node and requires CRI-O's no-key error: exactly
// MissingKeyMessage when the node's tree holds no key file, else that or NoUsableKeyMessage.
func (c *Context) pullFailsEverywhere(ctx context.Context, t T, ref string) {
	t.Helper()
	for _, n := range c.nodes(ctx, t) {
		entries, err := c.Driver.ListKeys(ctx, n)
		if err != nil {
			t.Fatalf("node %s: failed to list keys tree: %v", n, err)
		}
		want := []string{MissingKeyMessage}
		for _, e := range entries {
			if e.Type == nodedriver.TypeFile {
				want = append(want, NoUsableKeyMessage)
				break
			}
		}
		err = c.Driver.PullImage(ctx, n, ref)
		if err == nil {
			t.Fatalf("node %s: pulling %s succeeded, want it to fail with %q", n, ref, want)
		}
		if !slices.ContainsFunc(want, func(m string) bool { return strings.Contains(err.Error(), m) }) {
			t.Fatalf("node %s: pulling %s failed with %v, want %q", n, ref, err, want)
		}
	}
}

// requireNoKey fails the setup when a node already holds key (left by another tenant).
func (c *Context) requireNoKey(ctx context.Context, t T, img Image) {
	t.Helper()
	norm := mustNormalize(t, img.Key)
	for _, n := range c.nodes(ctx, t) {
		files, err := keytree.Files(ctx, c.Driver, n, norm)
		if err != nil {
			t.Fatalf("node %s: failed to inspect keys tree: %v", n, err)
		}
		if len(files) > 0 {
			t.Fatalf("node %s already holds the key of fixture %s at %s; remove the Secret that syncs it (label %s=%s marks leftovers of earlier runs)",
				n, img.Name, files[0].Path, secrets.LabelManagedBy, secrets.ManagedByValue)
		}
	}
}

func (c *Context) keySecret(name string, key []byte) *corev1.Secret {
	return secrets.Key(c.Namespace, c.nameFor(name), c.RunID, map[string][]byte{keyDataKey: key})
}

// syncKey creates a key Secret for img and waits for its file on every node.
func (c *Context) syncKey(ctx context.Context, t T, s *scope, name string, img Image) *corev1.Secret {
	t.Helper()
	sec := s.secrets.MustCreate(ctx, t, c.keySecret(name, img.Key))
	if _, err := c.waitFile(ctx, mustNormalize(t, img.Key)); err != nil {
		t.Fatalf("Secret %s/%s: %v", sec.Namespace, sec.Name, err)
	}
	return sec
}

// 1. Without the key, the encrypted fixture does not pull; a plain image does.
func featureNoKey() Feature {
	return Feature{
		Name: "without its key an encrypted image does not pull", Area: AreaPlain,
		Setup: func(ctx context.Context, t T, c *Context) {
			newScope(ctx, t, c)
			c.requireNoKey(ctx, t, c.Fixtures.A)
		},
		Assess: []Step{
			{Name: "pulling the encrypted fixture fails with the missing-key error", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullFailsEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
			{Name: "a plain image still pulls", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.Plain)
			}},
		},
	}
}

// 2. A key Secret becomes a 0600 file with the exact bytes; the image pulls and runs.
func featureKeySecret() Feature {
	var s *scope
	var sec *corev1.Secret
	return Feature{
		Name: "a key Secret makes its encrypted image pull", Area: AreaPlain,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			sec = s.secrets.MustCreate(ctx, t, c.keySecret("key-a", c.Fixtures.A.Key))
		},
		Assess: []Step{
			{Name: "the key file appears on every node with mode 0600 and the exact bytes", Fn: func(ctx context.Context, t T, c *Context) {
				norm := mustNormalize(t, c.Fixtures.A.Key)
				got, err := c.waitFile(ctx, norm)
				if err != nil {
					t.Fatalf("%v", err)
				}
				for n, e := range got {
					if e.Mode.Perm() != 0o600 {
						t.Errorf("node %s: %s has mode %04o, want 0600", n, e.Path, e.Mode.Perm())
					}
					if sub := c.Lab.SyncSubdir; sub != "" && !strings.HasPrefix(e.Path, sub+"/") {
						t.Errorf("node %s: key file %s is outside the synchronizer's directory %s/", n, e.Path, sub)
					}
					data, err := c.Driver.ReadKey(ctx, n, e.Path)
					if err != nil || !bytes.Equal(data, norm) {
						t.Errorf("node %s: %s does not hold the Secret's key bytes (err %v)", n, e.Path, err)
					}
				}
			}},
			{Name: "a KeySynced Event is recorded on the Secret", Fn: func(ctx context.Context, t T, c *Context) {
				if _, err := events.Wait(ctx, c.Client, "Secret", sec.Namespace, sec.Name, ReasonKeySynced, c.syncTimeout(), c.pollInterval()); err != nil {
					t.Fatalf("%v", err)
				}
			}},
			{Name: "the encrypted fixture pulls", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
			{Name: "the fixture runs and prints its marker where the lab can run containers", Fn: func(ctx context.Context, t T, c *Context) {
				if c.Fixtures.A.Marker == "" {
					t.Skipf("the fixtures manifest gives no marker for %s", c.Fixtures.A.Name)
				}
				for _, n := range c.nodes(ctx, t) {
					out, err := nodedriver.RunImage(ctx, c.Driver, n, c.Fixtures.A.Ref, fixtureOnceArg)
					if errors.Is(err, nodedriver.ErrUnsupported) {
						t.Skipf("node driver %s cannot run containers: %v", c.Driver.Name(), err)
					}
					if err != nil {
						t.Fatalf("node %s: running %s failed: %v", n, c.Fixtures.A.Ref, err)
					}
					if !strings.Contains(out, c.Fixtures.A.Marker) {
						t.Fatalf("node %s: %s printed %q, want it to contain %q", n, c.Fixtures.A.Ref, out, c.Fixtures.A.Marker)
					}
				}
			}},
		},
	}
}

// kpConfig is the keyprotect-config the synchronizer uses (mockkp as the cluster reaches it).
func (c *Context) kpConfig() kpkey.Config {
	url, tokenURL := c.Lab.MockKPClusterURL, c.Lab.MockKPClusterTokenURL
	if url == "" {
		url = c.Lab.MockKPURL
	}
	if tokenURL == "" {
		tokenURL = c.Lab.MockKPTokenURL
	}
	return kpkey.Config{URL: url, InstanceID: c.Lab.KPInstanceID, APIKey: c.Lab.KPAPIKey, TokenURL: tokenURL}
}

// kpLocalConfig is mockkp as the suites reach it.
func (c *Context) kpLocalConfig() kpkey.Config {
	return kpkey.Config{URL: c.Lab.MockKPURL, InstanceID: c.Lab.KPInstanceID, APIKey: c.Lab.KPAPIKey, TokenURL: c.Lab.MockKPTokenURL}
}

func (c *Context) requireKP(t T) {
	t.Helper()
	var missing []string
	for _, f := range []struct{ k, v string }{{"MOCKKP_URL", c.Lab.MockKPURL}, {"MOCKKP_ADMIN_URL", c.Lab.MockKPAdminURL},
		{"KP_INSTANCE_ID", c.Lab.KPInstanceID}, {"KP_APIKEY", c.Lab.KPAPIKey}, {"KP_ROOT_KEY_ID", c.Lab.KPRootKeyID}} {
		if f.v == "" {
			missing = append(missing, f.k)
		}
	}
	switch {
	case len(missing) > 0 && c.Lab.Lab == lab.KindCluster:
		// Any other cluster has no mockkp unless its user ran one and described it.
		t.Skipf("the lab env file has no Key Protect (lacks %v): kp-key features need a mockkp the synchronizer reaches; add its settings to the env file", missing)
	case len(missing) > 0:
		t.Fatalf("the lab env file lacks %v, which kp-key features need", missing)
	}
}

// putKPConfig creates (or replaces, restoring at cleanup) keyprotect-config.
func (c *Context) putKPConfig(ctx context.Context, t T, s *scope) {
	t.Helper()
	cfgSecret, err := secrets.KPConfig(c.Namespace, c.RunID, c.kpConfig())
	if err != nil {
		t.Fatalf("failed to build keyprotect-config: %v", err)
	}
	s.secrets.MustPut(ctx, t, cfgSecret)
}

func (c *Context) unwraps(ctx context.Context, t T) int64 {
	t.Helper()
	counts, err := kp.Counters(ctx, nil, c.Lab.MockKPAdminURL)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return counts["unwrap"]
}

// 3. A kp-key Secret is unwrapped once per node and its image pulls.
func featureKPKey() Feature {
	var before int64
	return Feature{
		Name: "a kp-key Secret is unwrapped once per node and its image pulls", Area: AreaKP,
		Setup: func(ctx context.Context, t T, c *Context) {
			s := newScope(ctx, t, c)
			c.requireKP(t)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			ct, err := kp.Wrap(ctx, c.kpLocalConfig(), c.Lab.KPRootKeyID, c.Fixtures.A.Key)
			if err != nil {
				t.Fatalf("failed to wrap the fixture key with mockkp: %v", err)
			}
			c.putKPConfig(ctx, t, s)
			before = c.unwraps(ctx, t)
			s.secrets.MustCreate(ctx, t, secrets.KPKey(c.Namespace, c.nameFor("kp-a"), c.RunID, c.Lab.KPRootKeyID, ct))
		},
		Assess: []Step{
			{Name: "the unwrapped key file appears on every node", Fn: func(ctx context.Context, t T, c *Context) {
				if _, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.A.Key)); err != nil {
					t.Fatalf("%v", err)
				}
			}},
			{Name: "the encrypted fixture pulls", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
			{Name: "mockkp counted exactly one unwrap per node", Fn: func(ctx context.Context, t T, c *Context) {
				want := int64(len(c.nodes(ctx, t)))
				// Consistently, not eventually: a synchronizer that unwraps again on resync
				// must show up here.
				deadline := time.Now().Add(3 * time.Second)
				for {
					if got := c.unwraps(ctx, t) - before; got != want {
						t.Fatalf("mockkp counted %d unwrap requests since the Secret was created, want %d (one per node)", got, want)
					}
					if time.Now().After(deadline) {
						return
					}
					select {
					case <-ctx.Done():
						t.Fatalf("%v", ctx.Err())
					case <-time.After(500 * time.Millisecond):
					}
				}
			}},
		},
	}
}

// 4. Deleting the Secret removes the file and revokes new pulls.
func featureRevocation() Feature {
	var s *scope
	var sec *corev1.Secret
	return Feature{
		Name: "deleting a key Secret revokes new pulls", Area: AreaRevocation,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			sec = c.syncKey(ctx, t, s, "revoke-a", c.Fixtures.A)
			c.pullEverywhere(ctx, t, c.Fixtures.A.Ref)
		},
		Assess: []Step{
			{Name: "deleting the Secret removes the key file from every node", Fn: func(ctx context.Context, t T, c *Context) {
				if err := s.secrets.Delete(ctx, sec.Namespace, sec.Name); err != nil {
					t.Fatalf("%v", err)
				}
				if err := c.waitNoFile(ctx, mustNormalize(t, c.Fixtures.A.Key)); err != nil {
					t.Fatalf("%v", err)
				}
			}},
			{Name: "pulling the encrypted fixture fails again", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullFailsEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
		},
	}
}

// 5. Rotating a Secret to another key replaces the file.
func featureRotation() Feature {
	var s *scope
	var sec *corev1.Secret
	return Feature{
		Name: "rotating a key Secret replaces the key file", Area: AreaRotation,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.requireNoKey(ctx, t, c.Fixtures.B)
			normA, normB := mustNormalize(t, c.Fixtures.A.Key), mustNormalize(t, c.Fixtures.B.Key)
			// Recorded first so that it runs last: after the Secret's deletion, neither the old
			// nor the new key may stay behind.
			s.tr.Add("key files of the rotated Secret", func(ctx context.Context) error {
				return errors.Join(c.waitNoFile(ctx, normA), c.waitNoFile(ctx, normB))
			})
			sec = c.syncKey(ctx, t, s, "rotate", c.Fixtures.A)
		},
		Assess: []Step{
			{Name: "the rotated Secret's new key replaces the old file", Fn: func(ctx context.Context, t T, c *Context) {
				if _, err := s.secrets.Update(ctx, sec.Namespace, sec.Name,
					map[string][]byte{keyDataKey: c.Fixtures.B.Key}); err != nil {
					t.Fatalf("%v", err)
				}
				if _, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.B.Key)); err != nil {
					t.Fatalf("new key: %v", err)
				}
				if err := c.waitNoFile(ctx, mustNormalize(t, c.Fixtures.A.Key)); err != nil {
					t.Fatalf("old key: %v", err)
				}
			}},
			{Name: "images for the new key pull", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.B.Ref)
			}},
			{Name: "images for the old key fail", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullFailsEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
		},
	}
}

// publicKeyPEM returns a fresh public key in PEM: parseable, but not a private key.
func publicKeyPEM() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("failed to marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// 7. Bad Secrets are rejected with Events, write nothing, and break no other key.
func featureBadInput() Feature {
	type bad struct {
		what, reason string
		secret       *corev1.Secret
	}
	var bads []bad
	var snapshot []string
	return Feature{
		Name: "bad Secrets are rejected, write nothing and break no other key", Area: AreaBadInput,
		Setup: func(ctx context.Context, t T, c *Context) {
			s := newScope(ctx, t, c)
			c.requireKP(t)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.syncKey(ctx, t, s, "good-a", c.Fixtures.A)
			c.putKPConfig(ctx, t, s)
			var err error
			snapshot, err = c.snapshots(ctx, t)
			if err != nil {
				t.Fatalf("%v", err)
			}
			pub, err := publicKeyPEM()
			if err != nil {
				t.Fatalf("%v", err)
			}
			unknownRoot := fmt.Sprintf("00000000-0000-4000-8000-%012x", time.Now().UnixNano()&0xffffffffffff)
			bads = []bad{
				{"invalid PEM", ReasonKeyRejected, c.keySecret("bad-pem", []byte("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"))},
				{"public key", ReasonKeyRejected, c.keySecret("bad-pub", pub)},
				{"unknown root key", ReasonUnwrapFailed, secrets.KPKey(c.Namespace, c.nameFor("bad-root"), c.RunID, unknownRoot,
					base64.StdEncoding.EncodeToString([]byte("keysync-suites: not a real ciphertext")))},
			}
			for _, b := range bads {
				s.secrets.MustCreate(ctx, t, b.secret)
			}
		},
		Assess: []Step{
			{Name: "each bad Secret gets its Event (KeyRejected or UnwrapFailed)", Fn: func(ctx context.Context, t T, c *Context) {
				for _, b := range bads {
					if _, err := events.Wait(ctx, c.Client, "Secret", b.secret.Namespace, b.secret.Name, b.reason, c.syncTimeout(), c.pollInterval()); err != nil {
						t.Errorf("%s: %v", b.what, err)
					}
				}
			}},
			{Name: "nothing is written for them", Fn: func(ctx context.Context, t T, c *Context) {
				now, err := c.snapshots(ctx, t)
				if err != nil {
					t.Fatalf("%v", err)
				}
				if !slices.Equal(now, snapshot) {
					t.Fatalf("the keys tree changed after bad Secrets:\nbefore: %q\nafter:  %q", snapshot, now)
				}
			}},
			{Name: "other keys still pull", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
		},
	}
}

// snapshots summarises every node's tree ("node: TYPE MODE SIZE PATH" lines).
func (c *Context) snapshots(ctx context.Context, t T) ([]string, error) {
	var all []string
	for _, n := range c.nodes(ctx, t) {
		lines, err := keytree.Snapshot(ctx, c.Driver, n)
		if err != nil {
			return nil, fmt.Errorf("node %s: failed to snapshot keys tree: %w", n, err)
		}
		for _, l := range lines {
			all = append(all, n+": "+l)
		}
	}
	return all, nil
}

// 6. Hygiene: a feature of its own (a tree with two keys, one then removed), and the final
// assessment of every feature.
func featureHygiene() Feature {
	var s *scope
	var secA *corev1.Secret
	return Feature{
		Name: "the keys tree stays clean while keys come and go", Area: AreaHygiene,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.requireNoKey(ctx, t, c.Fixtures.B)
			secA = c.syncKey(ctx, t, s, "hyg-a", c.Fixtures.A)
			c.syncKey(ctx, t, s, "hyg-b", c.Fixtures.B)
		},
		Assess: []Step{
			{Name: "with two keys synced the tree is clean", Fn: assessHygiene},
			{Name: "after one key is removed the tree is clean and the other key still pulls", Fn: func(ctx context.Context, t T, c *Context) {
				if err := s.secrets.Delete(ctx, secA.Namespace, secA.Name); err != nil {
					t.Fatalf("%v", err)
				}
				if err := c.waitNoFile(ctx, mustNormalize(t, c.Fixtures.A.Key)); err != nil {
					t.Fatalf("%v", err)
				}
				assessHygiene(ctx, t, c)
				c.pullEverywhere(ctx, t, c.Fixtures.B.Ref)
			}},
		},
	}
}

// assessHygiene audits every node's tree and pulls the plain image.
func assessHygiene(ctx context.Context, t T, c *Context) {
	t.Helper()
	for _, n := range c.nodes(ctx, t) {
		problems, err := keytree.Audit(ctx, c.Driver, n, c.Lab.SyncSubdir)
		if err != nil {
			t.Fatalf("node %s: failed to audit keys tree: %v", n, err)
		}
		for _, p := range problems {
			t.Errorf("node %s: %s: %s", n, p.Path, p.Reason)
		}
	}
	c.pullEverywhere(ctx, t, c.Fixtures.Plain)
}
