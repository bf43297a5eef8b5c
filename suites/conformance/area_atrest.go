// Area at-rest: the cluster stores key Secrets encrypted by keysync's KMS v2 plug-in (Key
// Protect wraps the DEKs), and that changes nothing for the synchronizer. The features read
// etcd's raw values (capability etcd) of a lab whose kube-apiserver encrypts through the
// plug-in (capability kms); rotation and outage need the lab's mockkp (capability mockkp).

package conformance

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/internal/etcdraw"
	"github.com/keysync-dev/keysync/suites/internal/kp"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// How long the at-rest features wait. kube-apiserver asks a healthy KMS v2 plug-in for its
// key_id once a minute and the plug-in reuses a look at the root key for its check interval
// (10 s), so a rotation shows in new writes within about 70 s. The outage lasts kmsOutage:
// long enough for the plug-in's cached look to expire and its retries to give up.
const (
	keyIDChangeTimeout = 3 * time.Minute
	kmsOutage          = 40 * time.Second
	readinessTimeout   = 60 * time.Second
)

// kmsPluginOps are the mockkp operations keysync's KMS plug-in calls.
var kmsPluginOps = []string{"token", "metadata", "wrap", "unwrap"}

// etcdClient reaches the lab's etcd (ETCD_* in the env file).
func (c *Context) etcdClient(t T) *etcdraw.Client {
	t.Helper()
	cl, err := etcdraw.New(etcdraw.Config{Endpoints: c.Lab.EtcdEndpoints, CAFile: c.Lab.EtcdCAFile,
		CertFile: c.Lab.EtcdCertFile, KeyFile: c.Lab.EtcdKeyFile})
	if err != nil {
		t.Fatalf("the lab has capability %s but its etcd is unusable: %v", lab.CapEtcd, err)
	}
	return cl
}

// envelope reads Secret name's raw etcd value and checks it is a KMS v2 envelope holding none
// of secretBytes; it returns the envelope.
func (c *Context) envelope(ctx context.Context, t T, name string, secretBytes ...[]byte) etcdraw.Envelope {
	t.Helper()
	raw, err := c.etcdClient(t).Get(ctx, etcdraw.SecretKey(c.Namespace, name))
	if err != nil {
		t.Fatalf("%v", err)
	}
	env, err := etcdraw.CheckEncrypted(raw, secretBytes...)
	if err != nil {
		t.Fatalf("Secret %s/%s is not encrypted at rest by a KMS v2 provider: %v", c.Namespace, name, err)
	}
	if c.Lab.KMSRootKeyID != "" && !strings.HasPrefix(env.KeyID, c.Lab.KMSRootKeyID+":") {
		t.Fatalf("Secret %s/%s: key id %q is not a version of the lab's KMS root key %s", c.Namespace, name, env.KeyID, c.Lab.KMSRootKeyID)
	}
	return env
}

// readsBack checks that the API serves Secret name with want's data.
func (c *Context) readsBack(ctx context.Context, t T, name string, want map[string][]byte) {
	t.Helper()
	got, err := c.Client.CoreV1().Secrets(c.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("failed to read Secret %s/%s through the API: %v", c.Namespace, name, err)
	}
	if !maps.EqualFunc(got.Data, want, bytes.Equal) {
		t.Fatalf("Secret %s/%s reads back with other data than written", c.Namespace, name)
	}
}

// 13. A key Secret's raw etcd value is a KMS v2 envelope with none of the key's bytes.
func featureAtRestEnvelope() Feature {
	var name string
	return Feature{
		Name: "a key Secret is stored in etcd as a KMS v2 envelope without the key's bytes", Area: AreaAtRest,
		Setup: func(ctx context.Context, t T, c *Context) {
			c.require(t, lab.CapKMS, lab.CapEtcd)
			s := newScope(ctx, t, c)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			name = c.syncKey(ctx, t, s, "atrest-a", c.Fixtures.A).Name
		},
		Assess: []Step{
			{Name: "the raw etcd value starts with " + etcdraw.KMSv2Prefix + " and holds none of the key's bytes", Fn: func(ctx context.Context, t T, c *Context) {
				env := c.envelope(ctx, t, name, c.Fixtures.A.Key, mustNormalize(t, c.Fixtures.A.Key))
				t.Logf("raw value: %s%s: key id %s, %d bytes of data, %d-byte wrapped DEK", etcdraw.KMSv2Prefix, env.Provider, env.KeyID, env.DataLen, env.DEKLen)
			}},
			{Name: "the Secret reads back through the API", Fn: func(ctx context.Context, t T, c *Context) {
				c.readsBack(ctx, t, name, map[string][]byte{keyDataKey: c.Fixtures.A.Key})
			}},
		},
	}
}

// keyTrees is every node's audit: "node: TYPE MODE SIZE SHA256 PATH" lines.
func (c *Context) keyTrees(ctx context.Context, t T) []string {
	t.Helper()
	var all []string
	for _, n := range c.nodes(ctx, t) {
		entries, err := nodedriver.AuditKeys(ctx, c.Driver, n)
		if err != nil {
			t.Fatalf("node %s: failed to audit keys tree: %v", n, err)
		}
		for _, e := range entries {
			all = append(all, fmt.Sprintf("%s: %s %04o %d %s %s", n, e.Type, e.Mode.Perm(), e.Size, e.SHA256, e.Path))
		}
	}
	slices.Sort(all)
	return all
}

// 14. Rewriting every Secret (the runbook's `kubectl get secrets -o json | kubectl replace -f -`
// after enabling encryption) changes nothing for the synchronizer.
func featureAtRestRewrite() Feature {
	var s *scope
	var countUnwraps bool
	return Feature{
		Name: "rewriting every Secret changes no key file and unwraps nothing", Area: AreaAtRest,
		Setup: func(ctx context.Context, t T, c *Context) {
			c.require(t, lab.CapKMS)
			s = newScope(ctx, t, c)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.syncKey(ctx, t, s, "rewrite-a", c.Fixtures.A)
			if !c.Lab.Has(lab.CapMockKP) {
				t.Logf("no mockkp (capability %s): unwraps are not counted", lab.CapMockKP)
				return
			}
			target := c.useKP(ctx, t, s, true)
			c.requireNoKey(ctx, t, c.Fixtures.B)
			c.ownKey(c.Fixtures.B.Key)
			ct, err := kp.Wrap(ctx, target.wrap, target.rootKeyID, c.Fixtures.B.Key)
			if err != nil {
				t.Fatalf("failed to wrap the fixture key with Key Protect: %v", err)
			}
			s.secrets.MustCreate(ctx, t, secrets.KPKey(c.Namespace, c.nameFor("rewrite-kp-b"), c.RunID, target.rootKeyID, ct))
			if _, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.B.Key)); err != nil {
				t.Fatalf("%v", err)
			}
			countUnwraps = !target.live
		},
		Assess: []Step{
			{Name: "after get | replace of every Secret in the namespace, every node's key files and mockkp's unwrap count stay the same", Fn: func(ctx context.Context, t T, c *Context) {
				before := c.keyTrees(ctx, t)
				var unwraps int64
				if countUnwraps {
					unwraps = c.unwraps(ctx, t)
				}
				list, err := c.Client.CoreV1().Secrets(c.Namespace).List(ctx, metav1.ListOptions{})
				if err != nil {
					t.Fatalf("failed to list Secrets in %s: %v", c.Namespace, err)
				}
				moved := 0
				for i := range list.Items {
					sec := &list.Items[i]
					out, err := c.Client.CoreV1().Secrets(c.Namespace).Update(ctx, sec, metav1.UpdateOptions{})
					if err != nil {
						t.Fatalf("failed to replace Secret %s/%s: %v", sec.Namespace, sec.Name, err)
					}
					if out.ResourceVersion != sec.ResourceVersion {
						moved++
					}
				}
				t.Logf("replaced %d Secrets (%d got a new resourceVersion)", len(list.Items), moved)
				// Consistently, not eventually: a synchronizer that rewrites on every update
				// (or unwraps again) must show up here.
				deadline := time.Now().Add(5 * time.Second)
				for {
					if after := c.keyTrees(ctx, t); !slices.Equal(before, after) {
						t.Fatalf("the keys trees changed after the rewrite:\nbefore:\n%s\nafter:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
					}
					if countUnwraps {
						if d := c.unwraps(ctx, t) - unwraps; d != 0 {
							t.Fatalf("mockkp counted %d unwraps after the rewrite, want 0", d)
						}
					}
					if time.Now().After(deadline) {
						return
					}
					if !sleepCtx(ctx, 500*time.Millisecond) {
						t.Fatalf("%v", ctx.Err())
					}
				}
			}},
			{Name: "the run's Secrets are still KMS v2 envelopes", Fn: func(ctx context.Context, t T, c *Context) {
				if !c.Lab.Has(lab.CapEtcd) {
					t.Skipf("reading etcd needs capability %s (%s)", lab.CapEtcd, whoHas[lab.CapEtcd])
				}
				c.envelope(ctx, t, c.nameFor("rewrite-a"), c.Fixtures.A.Key)
				if countUnwraps {
					c.envelope(ctx, t, c.nameFor("rewrite-kp-b"))
				}
			}},
		},
	}
}

// 15. After a root-key rotation in Key Protect, new writes carry the new key id and Secrets
// written before still read.
func featureAtRestRotation() Feature {
	var s *scope
	var oldName string
	var oldEnv etcdraw.Envelope
	var newKeyID string
	return Feature{
		Name: "after a KMS root-key rotation new writes carry the new key id and old Secrets still read", Area: AreaAtRest,
		Setup: func(ctx context.Context, t T, c *Context) {
			c.require(t, lab.CapKMS, lab.CapEtcd, lab.CapMockKP)
			if c.Lab.KMSRootKeyID == "" {
				t.Fatalf("the lab has capability %s but its env file lacks KMS_ROOT_KEY_ID", lab.CapKMS)
			}
			s = newScope(ctx, t, c)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.requireNoKey(ctx, t, c.Fixtures.B)
			oldName = c.syncKey(ctx, t, s, "kms-old-a", c.Fixtures.A).Name
			oldEnv = c.envelope(ctx, t, oldName, c.Fixtures.A.Key)
			// A rotation cannot be undone; it only adds a root key version, which every later
			// run and the plug-in's Decrypt of older values take in their stride.
			if err := kp.Rotate(ctx, c.kpLocalConfig(), c.Lab.KMSRootKeyID); err != nil {
				t.Fatalf("%v", err)
			}
			t.Logf("rotated KMS root key %s (key id was %s)", c.Lab.KMSRootKeyID, oldEnv.KeyID)
		},
		Assess: []Step{
			{Name: "new writes carry the root key's new version as key id", Fn: func(ctx context.Context, t T, c *Context) {
				probe := s.secrets.MustCreate(ctx, t, secrets.Opaque(c.Namespace, c.nameFor("kms-probe"), c.RunID, map[string][]byte{"n": []byte("0")}))
				start := time.Now()
				for i := 1; ; i++ {
					env := c.envelope(ctx, t, probe.Name)
					if env.KeyID != oldEnv.KeyID {
						newKeyID = env.KeyID
						t.Logf("new writes carry key id %s after %.1fs (%d writes)", newKeyID, time.Since(start).Seconds(), i)
						break
					}
					if time.Since(start) > keyIDChangeTimeout {
						t.Fatalf("after %s and %d writes new values still carry key id %s: kube-apiserver never moved to the rotated root key", keyIDChangeTimeout, i, env.KeyID)
					}
					if !sleepCtx(ctx, 2*time.Second) {
						t.Fatalf("%v", ctx.Err())
					}
					if _, err := s.secrets.Update(ctx, c.Namespace, probe.Name, map[string][]byte{"n": fmt.Appendf(nil, "%d", i)}); err != nil {
						t.Fatalf("%v", err)
					}
				}
				name := c.syncKey(ctx, t, s, "kms-new-b", c.Fixtures.B).Name
				if env := c.envelope(ctx, t, name, c.Fixtures.B.Key); env.KeyID != newKeyID {
					t.Fatalf("a key Secret written after the rotation carries key id %s, want %s", env.KeyID, newKeyID)
				}
			}},
			{Name: "the Secret written before the rotation keeps its key id and still reads", Fn: func(ctx context.Context, t T, c *Context) {
				if env := c.envelope(ctx, t, oldName, c.Fixtures.A.Key); env.KeyID != oldEnv.KeyID {
					t.Fatalf("the Secret written before the rotation now carries key id %s, want %s (it was not rewritten)", env.KeyID, oldEnv.KeyID)
				}
				c.readsBack(ctx, t, oldName, map[string][]byte{keyDataKey: c.Fixtures.A.Key})
				if _, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.A.Key)); err != nil {
					t.Fatalf("%v", err)
				}
			}},
		},
	}
}

// kmsReady reports whether the plug-in's readiness URL answers 200.
func (c *Context) kmsReady(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return lab.CheckHTTP(cctx, http.DefaultClient, c.Lab.KMSHealthURL)
}

// waitKMSReady polls the plug-in's readiness until it is want (true: ready) and returns how
// long that took; every poll runs each (reads that must keep working meanwhile).
func (c *Context) waitKMSReady(ctx context.Context, t T, want bool, timeout time.Duration, each func()) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := c.kmsReady(ctx)
		if (err == nil) == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("the KMS plug-in's readiness (%s) did not become %v within %s (last: %v)", c.Lab.KMSHealthURL, want, timeout, err)
		}
		if each != nil {
			each()
		}
		if !sleepCtx(ctx, time.Second) {
			t.Fatalf("%v", ctx.Err())
		}
	}
}

// 16. With Key Protect unreachable, existing Secrets still read and the plug-in's readiness
// goes false, then recovers once Key Protect is back.
func featureAtRestOutage() Feature {
	var name string
	var faultsAt time.Time
	return Feature{
		Name: "with Key Protect unreachable existing Secrets still read and the KMS plug-in is unready until it is back", Area: AreaAtRest,
		Setup: func(ctx context.Context, t T, c *Context) {
			c.require(t, lab.CapKMS, lab.CapMockKP)
			if c.Lab.KMSHealthURL == "" {
				t.Fatalf("the lab has capability %s but its env file lacks KMS_HEALTH_URL", lab.CapKMS)
			}
			s := newScope(ctx, t, c)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			name = c.syncKey(ctx, t, s, "kms-down-a", c.Fixtures.A).Name
			c.readsBack(ctx, t, name, map[string][]byte{keyDataKey: c.Fixtures.A.Key})
			c.waitKMSReady(ctx, t, true, readinessTimeout, nil)
			t.Cleanup(func() {
				if err := kp.ClearFaults(context.WithoutCancel(ctx), nil, c.Lab.MockKPAdminURL); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			})
		},
		Assess: []Step{
			{Name: "with mockkp dropping the plug-in's calls, readiness goes false and the Secret still reads", Fn: func(ctx context.Context, t T, c *Context) {
				for _, op := range kmsPluginOps {
					if err := kp.AddFault(ctx, nil, c.Lab.MockKPAdminURL, kp.Fault{Op: op, Kind: "drop", For: kmsOutage.String()}); err != nil {
						t.Fatalf("%v", err)
					}
				}
				faultsAt = time.Now()
				reads := 0
				read := func() {
					c.readsBack(ctx, t, name, map[string][]byte{keyDataKey: c.Fixtures.A.Key})
					reads++
				}
				took := c.waitKMSReady(ctx, t, false, kmsOutage, read)
				read()
				if _, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.A.Key)); err != nil {
					t.Fatalf("%v", err)
				}
				t.Logf("readiness went false %.1fs into the outage; %d reads of the Secret meanwhile all served", took.Seconds(), reads)
			}},
			{Name: "once Key Protect answers again, readiness recovers", Fn: func(ctx context.Context, t T, c *Context) {
				if faultsAt.IsZero() {
					t.Fatalf("the outage step did not run")
				}
				c.waitKMSReady(ctx, t, true, kmsOutage+readinessTimeout, nil)
				since := time.Since(faultsAt)
				t.Logf("readiness recovered %.1fs after the outage began (it lasted %s)", since.Seconds(), kmsOutage)
				if since < kmsOutage-time.Second {
					t.Fatalf("readiness came back %.1fs into the outage, while Key Protect was still unreachable (outage %s)", since.Seconds(), kmsOutage)
				}
				c.readsBack(ctx, t, name, map[string][]byte{keyDataKey: c.Fixtures.A.Key})
			}},
		},
	}
}

// sleepCtx waits d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
