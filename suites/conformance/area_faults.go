// Area faults: Key Protect and IAM failing in every way they fail (5xx, 429, HTML pages,
// dropped and refused connections, stalls), Key Protect unreachable for a minute, the
// synchronizer killed with SIGKILL in the middle of 200 Secret changes and kube-apiserver
// restarted. A synced key never goes, changes land once the fault is over, and the tree watch
// sees no file CRI-O could not use.

package conformance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/internal/kp"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// The faults' lengths: the outage is the minute; the stall outlasts a 30 s client
// timeout; a tree watch stays within the pod-exec transport's default 5-minute command
// timeout.
const (
	kpOutage   = 60 * time.Second
	kpStall    = "35s"
	burstSize  = 200
	burstKeys  = 20
	watchLimit = 4 * time.Minute
)

// refusedURL is an address nothing listens on, wherever the synchronizer runs (its own
// loopback): connections are refused.
const refusedURL = "http://127.0.0.1:1"

// newKeyPEM is a fresh EC P-256 private key in PKCS#8 PEM (what CRI-O reads as it is).
func newKeyPEM(t T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("failed to generate key: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatalf("failed to marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// wrapped is a fresh key and its Key Protect ciphertext, wrapped before any fault is queued
// (the suite reaches mockkp through the same faults as the synchronizer).
type wrapped struct {
	key []byte
	ct  string
}

// newWrapped makes a fresh key and wraps it with mockkp.
func (c *Context) newWrapped(ctx context.Context, t T) wrapped {
	t.Helper()
	key := newKeyPEM(t)
	ct, err := kp.Wrap(ctx, c.kpLocalConfig(), c.Lab.KPRootKeyID, key)
	if err != nil {
		t.Fatalf("failed to wrap a key with mockkp: %v", err)
	}
	return wrapped{key: key, ct: ct}
}

// kpSecret creates a kp-key Secret for w.
func (c *Context) kpSecret(ctx context.Context, t T, s *scope, name string, w wrapped) *corev1.Secret {
	t.Helper()
	return s.secrets.MustCreate(ctx, t, secrets.KPKey(c.Namespace, c.nameFor(name), c.RunID, c.Lab.KPRootKeyID, w.ct))
}

// useLabKP creates keyprotect-config for the lab's mockkp (see useKP) for a feature that
// injects faults into it and rewrites it; where the cluster's own keyprotect-config exists the
// feature skips: the live configuration is never changed.
func (c *Context) useLabKP(ctx context.Context, t T, s *scope) {
	t.Helper()
	if target := c.useKP(ctx, t, s, false); target.live {
		t.Skipf("fault injection needs the lab's mockkp and a %s/%s this run creates; the cluster's own exists and is never changed",
			c.Namespace, names.KPConfigSecret)
	}
}

// putKPConfigAs replaces keyprotect-config (one this run created: useLabKP) with cfg; suffix is appended to its JSON (a
// changed Secret with the same meaning makes a synchronizer build a new client).
func (c *Context) putKPConfigAs(ctx context.Context, t T, s *scope, cfg kpkey.Config, suffix string) {
	t.Helper()
	sec, err := secrets.KPConfig(c.Namespace, c.RunID, cfg)
	if err != nil {
		t.Fatalf("failed to build keyprotect-config: %v", err)
	}
	sec.Data[kpkey.ConfigKey] = append(sec.Data[kpkey.ConfigKey], suffix...)
	s.secrets.MustPut(ctx, t, sec)
}

// addFaults queues faults on mockkp and clears every fault when the test ends.
func (c *Context) addFaults(ctx context.Context, t T, faults ...kp.Fault) {
	t.Helper()
	t.Cleanup(func() {
		if err := kp.ClearFaults(context.WithoutCancel(ctx), nil, c.Lab.MockKPAdminURL); err != nil {
			t.Errorf("%v", err)
		}
	})
	for _, f := range faults {
		if err := kp.AddFault(ctx, nil, c.Lab.MockKPAdminURL, f); err != nil {
			t.Fatalf("%v", err)
		}
	}
}

// pendingFaults logs the faults the synchronizer never ran into and clears them.
func (c *Context) pendingFaults(ctx context.Context, t T, what string) {
	t.Helper()
	left, err := kp.PendingFaults(ctx, nil, c.Lab.MockKPAdminURL)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if len(left) > 0 {
		t.Logf("%s: the synchronizer never ran into %d of the faults (%v): not exercised", what, len(left), left)
	}
	if err := kp.ClearFaults(ctx, nil, c.Lab.MockKPAdminURL); err != nil {
		t.Fatalf("%v", err)
	}
}

// waitKeys waits for every key's file on every node.
func (c *Context) waitKeys(ctx context.Context, t T, what string, keys ...[]byte) {
	t.Helper()
	for i, k := range keys {
		if _, err := c.waitFile(ctx, mustNormalize(t, k)); err != nil {
			t.Fatalf("%s (key %d of %d): %v", what, i+1, len(keys), err)
		}
	}
}

func digestOf(t T, key []byte) string { return nodedriver.SHA256Hex(mustNormalize(t, key)) }

// 14. Key Protect and IAM errors never remove a synced key; new keys land once they stop.
func featureKPErrors() Feature {
	var s *scope
	var synced [][]byte
	var w *treeWatch
	return Feature{
		Name: "Key Protect and IAM errors never remove a synced key, and new keys land once they stop", Area: AreaFaults,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.useLabKP(ctx, t, s)
			first := c.newWrapped(ctx, t)
			synced = [][]byte{first.key}
			c.kpSecret(ctx, t, s, "kperr-0", first)
			c.waitKeys(ctx, t, "the kp-key Secret synced before the faults", first.key)
			w = c.startTreeWatch(ctx, t, watchLimit)
			t.Cleanup(w.stop)
		},
		Assess: []Step{
			{Name: "unwraps answered 500, 503, 429, an HTML page, a dropped connection and a stall: new kp-key Secrets land after", Fn: func(ctx context.Context, t T, c *Context) {
				var ws []wrapped
				for range 3 {
					ws = append(ws, c.newWrapped(ctx, t))
				}
				c.addFaults(ctx, t,
					kp.Fault{Op: "unwrap", Kind: "status", Status: 500},
					kp.Fault{Op: "unwrap", Kind: "status", Status: 503, RetryAfter: "1s"},
					kp.Fault{Op: "unwrap", Kind: "status", Status: 429, RetryAfter: "1s"},
					kp.Fault{Op: "unwrap", Kind: "html", Status: 502},
					kp.Fault{Op: "unwrap", Kind: "drop"},
					kp.Fault{Op: "unwrap", Kind: "latency", Latency: kpStall},
				)
				var fresh [][]byte
				for i, w := range ws {
					c.kpSecret(ctx, t, s, fmt.Sprintf("kperr-u%d", i), w)
					fresh = append(fresh, w.key)
				}
				c.waitKeys(ctx, t, "a kp-key Secret created while unwraps failed", fresh...)
				c.pendingFaults(ctx, t, "unwrap faults")
				synced = append(synced, fresh...)
			}},
			{Name: "IAM token requests answered 500, 503, 429, an HTML page and a dropped connection: a new kp-key Secret lands after", Fn: func(ctx context.Context, t T, c *Context) {
				w := c.newWrapped(ctx, t)
				c.addFaults(ctx, t,
					kp.Fault{Op: "token", Kind: "status", Status: 500},
					kp.Fault{Op: "token", Kind: "status", Status: 503, RetryAfter: "1s"},
					kp.Fault{Op: "token", Kind: "status", Status: 429, RetryAfter: "1s"},
					kp.Fault{Op: "token", Kind: "html", Status: 503},
					kp.Fault{Op: "token", Kind: "drop"},
				)
				// The same settings in a changed Secret: a synchronizer builds a new client,
				// which has no token yet.
				c.putKPConfigAs(ctx, t, s, c.kpConfig(), "\n")
				c.kpSecret(ctx, t, s, "kperr-t", w)
				c.waitKeys(ctx, t, "a kp-key Secret created while IAM failed", w.key)
				c.pendingFaults(ctx, t, "IAM faults")
				synced = append(synced, w.key)
			}},
			{Name: "Key Protect and IAM refusing connections: a new kp-key Secret lands once they answer again", Fn: func(ctx context.Context, t T, c *Context) {
				cfg := c.kpConfig()
				cfg.URL, cfg.TokenURL = refusedURL, refusedURL+"/identity/token"
				c.putKPConfigAs(ctx, t, s, cfg, "")
				w := c.newWrapped(ctx, t)
				c.kpSecret(ctx, t, s, "kperr-r", w)
				sleepCtx(ctx, 5*time.Second) // the synchronizer tries, and is refused
				c.putKPConfigAs(ctx, t, s, c.kpConfig(), "")
				c.waitKeys(ctx, t, "a kp-key Secret created while Key Protect refused connections", w.key)
				synced = append(synced, w.key)
			}},
			{Name: "no synced key was removed or replaced meanwhile (tree watch)", Fn: func(ctx context.Context, t T, c *Context) {
				var ds []string
				for _, k := range synced {
					ds = append(ds, digestOf(t, k))
				}
				w.checkNotRemoved(t, "a synced key", ds...)
			}},
			{Name: "every file that appeared, even briefly, was a key CRI-O accepts (tree watch)", Fn: func(_ context.Context, t T, _ *Context) {
				w.checkOnlyUsableKeys(t)
			}},
		},
	}
}

// 15. Key Protect unreachable for a minute: synced keys stay, a Secret made meanwhile lands.
func featureKPOutage() Feature {
	var s *scope
	var before []byte
	var w *treeWatch
	return Feature{
		Name: "Key Protect unreachable for 60 s: synced keys stay, a kp-key Secret created meanwhile lands afterwards", Area: AreaFaults,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.useLabKP(ctx, t, s)
			w0 := c.newWrapped(ctx, t)
			before = w0.key
			c.kpSecret(ctx, t, s, "outage-0", w0)
			c.waitKeys(ctx, t, "the kp-key Secret synced before the outage", before)
			w = c.startTreeWatch(ctx, t, watchLimit)
			t.Cleanup(w.stop)
		},
		Assess: []Step{
			{Name: "during the outage a new kp-key Secret waits; after it, the key lands", Fn: func(ctx context.Context, t T, c *Context) {
				w1 := c.newWrapped(ctx, t)
				start := time.Now()
				c.addFaults(ctx, t, kp.Fault{Op: "*", Kind: "drop", Count: 1 << 30})
				sleepCtx(ctx, kpOutage/2)
				c.kpSecret(ctx, t, s, "outage-1", w1)
				sleepCtx(ctx, kpOutage-time.Since(start))
				if err := kp.ClearFaults(ctx, nil, c.Lab.MockKPAdminURL); err != nil {
					t.Fatalf("%v", err)
				}
				end := time.Now()
				c.waitKeys(ctx, t, "a kp-key Secret created during the outage", w1.key)
				t.Logf("Key Protect was unreachable for %s; the key created during the outage landed %s after it ended",
					end.Sub(start).Round(time.Second), time.Since(end).Round(100*time.Millisecond))
			}},
			{Name: "the key synced before the outage was never removed (tree watch)", Fn: func(_ context.Context, t T, _ *Context) {
				w.checkNotRemoved(t, "the key synced before the outage", digestOf(t, before))
			}},
			{Name: "every file that appeared, even briefly, was a key CRI-O accepts (tree watch)", Fn: func(_ context.Context, t T, _ *Context) {
				w.checkOnlyUsableKeys(t)
			}},
		},
	}
}

// killSyncer kills the synchronizer with SIGKILL and returns once it runs again: the lab's
// KILL_SYNCER_CMD, else (any cluster) its DaemonSet's pods deleted with grace period 0.
func (c *Context) killSyncer(ctx context.Context) error {
	if c.Lab.Has(lab.CapKillSyncer) {
		_, err := nodedriver.RunHook(ctx, 5*time.Minute, os.Stderr, "kill the synchronizer", nodedriver.ParseCommand(c.Lab.KillSyncerCmd))
		return err
	}
	_, _, ready, err := c.addonPods(ctx)
	if err != nil {
		return err
	}
	old := map[types.UID]bool{}
	zero := int64(0)
	for _, p := range ready {
		old[p.UID] = true
		if err := c.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			return fmt.Errorf("failed to delete synchronizer pod %s: %w", p.Name, err)
		}
	}
	return c.waitAddonPods(ctx, old)
}

// 16. The synchronizer killed with SIGKILL in a burst of 200 Secret changes.
func featureKillDuringBurst() Feature {
	var s *scope
	var w *treeWatch
	desired := map[string][]byte{} // Secret short name → its current key
	var gone [][]byte              // keys no Secret holds any more
	return Feature{
		Name: "the synchronizer killed (SIGKILL) during a burst of 200 Secret changes: afterwards the tree holds exactly the desired keys, and no partial file ever appeared",
		Area: AreaFaults, Labels: map[string]string{LabelDisruptive: "true"},
		Setup: func(ctx context.Context, t T, c *Context) {
			if !c.Lab.Has(lab.CapKillSyncer) && !c.Lab.Has(lab.CapCluster) {
				c.skipWithout(t, lab.CapKillSyncer)
			}
			s = newScope(ctx, t, c)
			w = c.startTreeWatch(ctx, t, watchLimit)
			t.Cleanup(w.stop)
		},
		Assess: []Step{
			{Name: "200 changes (creates, rotations, deletes) with the synchronizer killed halfway", Fn: func(ctx context.Context, t T, c *Context) {
				var killErr error
				var killTook time.Duration
				var wg sync.WaitGroup
				start := time.Now()
				for i := range burstSize {
					if i == burstSize/2 {
						wg.Add(1)
						go func() {
							defer wg.Done()
							k := time.Now()
							killErr = c.killSyncer(ctx)
							killTook = time.Since(k)
						}()
					}
					name := fmt.Sprintf("burst-%02d", i%burstKeys)
					switch {
					case i < burstKeys: // create
						k := newKeyPEM(t)
						s.secrets.MustCreate(ctx, t, c.keySecret(name, k))
						desired[name] = k
					case i >= burstSize-burstKeys/4: // delete the last few
						if err := s.secrets.Delete(ctx, c.Namespace, c.nameFor(name)); err != nil {
							t.Fatalf("%v", err)
						}
						gone = append(gone, desired[name])
						delete(desired, name)
					default: // rotate
						k := newKeyPEM(t)
						if _, err := s.secrets.Update(ctx, c.Namespace, c.nameFor(name), map[string][]byte{keyDataKey: k}); err != nil {
							t.Fatalf("change %d: %v", i, err)
						}
						gone = append(gone, desired[name])
						desired[name] = k
					}
				}
				t.Logf("%d Secret changes in %s", burstSize, time.Since(start).Round(100*time.Millisecond))
				wg.Wait()
				if killErr != nil {
					t.Fatalf("failed to kill the synchronizer: %v", killErr)
				}
				t.Logf("the synchronizer was killed after change %d and ran again %s later", burstSize/2, killTook.Round(100*time.Millisecond))
			}},
			{Name: "the tree holds exactly the desired keys: every current key, none of the replaced or deleted ones", Fn: func(ctx context.Context, t T, c *Context) {
				var want [][]byte
				for _, k := range desired {
					want = append(want, k)
				}
				c.waitKeys(ctx, t, "a key of the burst's final state", want...)
				for i, k := range gone {
					if err := c.waitNoFile(ctx, mustNormalize(t, k)); err != nil {
						t.Errorf("replaced or deleted key %d of %d: %v", i+1, len(gone), err)
					}
				}
			}},
			{Name: "every file that appeared, even briefly, was a key CRI-O accepts (tree watch)", Fn: func(_ context.Context, t T, _ *Context) {
				w.checkOnlyUsableKeys(t)
			}},
			{Name: "deleting the burst's Secrets removes their keys", Fn: func(ctx context.Context, t T, c *Context) {
				for name, k := range desired {
					if err := s.secrets.Delete(ctx, c.Namespace, c.nameFor(name)); err != nil {
						t.Fatalf("%v", err)
					}
					if err := c.waitNoFile(ctx, mustNormalize(t, k)); err != nil {
						t.Errorf("%v", err)
					}
				}
			}},
		},
	}
}

// 17. kube-apiserver restarted: synced keys stay, changes made right after it are applied.
func featureAPIServerRestart() Feature {
	var s *scope
	var w *treeWatch
	var keep, rotated, deleted []byte
	return Feature{
		Name: "kube-apiserver restarted: synced keys stay, and changes made as it comes back are applied",
		Area: AreaFaults, Labels: map[string]string{LabelDisruptive: "true"},
		Setup: func(ctx context.Context, t T, c *Context) {
			c.require(t, lab.CapRestartAPIServer)
			s = newScope(ctx, t, c)
			keep, rotated, deleted = newKeyPEM(t), newKeyPEM(t), newKeyPEM(t)
			for name, k := range map[string][]byte{"api-keep": keep, "api-rot": rotated, "api-del": deleted} {
				s.secrets.MustCreate(ctx, t, c.keySecret(name, k))
			}
			c.waitKeys(ctx, t, "a key synced before the restart", keep, rotated, deleted)
			w = c.startTreeWatch(ctx, t, watchLimit)
			t.Cleanup(w.stop)
		},
		Assess: []Step{
			{Name: "after the restart a create, a rotation and a delete are applied", Fn: func(ctx context.Context, t T, c *Context) {
				start := time.Now()
				if _, err := nodedriver.RunHook(ctx, 5*time.Minute, os.Stderr, "restart kube-apiserver", nodedriver.ParseCommand(c.Lab.RestartAPIServerCmd)); err != nil {
					t.Fatalf("%v", err)
				}
				t.Logf("kube-apiserver back after %s", time.Since(start).Round(100*time.Millisecond))
				created, next := newKeyPEM(t), newKeyPEM(t)
				s.secrets.MustCreate(ctx, t, c.keySecret("api-new", created))
				if _, err := s.secrets.Update(ctx, c.Namespace, c.nameFor("api-rot"), map[string][]byte{keyDataKey: next}); err != nil {
					t.Fatalf("%v", err)
				}
				if err := s.secrets.Delete(ctx, c.Namespace, c.nameFor("api-del")); err != nil {
					t.Fatalf("%v", err)
				}
				c.waitKeys(ctx, t, "a change made after the restart", created, next)
				for _, k := range [][]byte{rotated, deleted} {
					if err := c.waitNoFile(ctx, mustNormalize(t, k)); err != nil {
						t.Errorf("%v", err)
					}
				}
				if err := s.secrets.Delete(ctx, c.Namespace, c.nameFor("api-rot")); err != nil {
					t.Fatalf("%v", err)
				}
				if err := c.waitNoFile(ctx, mustNormalize(t, next)); err != nil {
					t.Errorf("%v", err)
				}
			}},
			{Name: "the key no change touched was never removed (tree watch)", Fn: func(_ context.Context, t T, _ *Context) {
				w.checkNotRemoved(t, "a key no change touched", digestOf(t, keep))
			}},
			{Name: "every file that appeared, even briefly, was a key CRI-O accepts (tree watch)", Fn: func(_ context.Context, t T, _ *Context) {
				w.checkOnlyUsableKeys(t)
			}},
		},
	}
}
