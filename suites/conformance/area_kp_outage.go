// Area kp, continued: a Key Protect outage never removes a key that was synced.

package conformance

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/suites/internal/keytree"
	"github.com/keysync-dev/keysync/suites/internal/kp"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
)

// During the outage the synced key is watched until the synchronizer made outageAttempts
// unwrap requests (the official client retries a 503 internally, 5 requests in all, before
// its caller sees the failure), then for outageHold more.
const (
	outageAttempts = 5
	outageHold     = 3 * time.Second
)

// 3b. A kp-key Secret synced with key A gets a new version (key B) while Key Protect answers
// every unwrap with 503: A's file stays; once Key Protect is back, B replaces it.
func featureKPUnwrapOutage() Feature {
	var s *scope
	var sec *corev1.Secret
	var ctB string
	return Feature{
		Name: "a Key Protect outage removes no synced key", Area: AreaKP,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.useLabKP(ctx, t, s)
			// The kp feature before this one deletes its kp-key Secret of key A at its end
			// without waiting for the file to go (it cannot know the key from the Secret).
			_ = c.waitNoFile(ctx, mustNormalize(t, c.Fixtures.A.Key))
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.requireNoKey(ctx, t, c.Fixtures.B)
			ctA, err := kp.Wrap(ctx, c.kpLocalConfig(), c.Lab.KPRootKeyID, c.Fixtures.A.Key)
			if err != nil {
				t.Fatalf("failed to wrap the fixture key with mockkp: %v", err)
			}
			if ctB, err = kp.Wrap(ctx, c.kpLocalConfig(), c.Lab.KPRootKeyID, c.Fixtures.B.Key); err != nil {
				t.Fatalf("failed to wrap the fixture key with mockkp: %v", err)
			}
			sec = s.secrets.MustCreate(ctx, t, secrets.KPKey(c.Namespace, c.nameFor("kp-outage"), c.RunID, c.Lab.KPRootKeyID, ctA))
			if _, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.A.Key)); err != nil {
				t.Fatalf("Secret %s/%s: %v", sec.Namespace, sec.Name, err)
			}
		},
		Assess: []Step{
			{Name: "while every unwrap fails with 503, a new version of the Secret leaves the synced key in place", Fn: func(ctx context.Context, t T, c *Context) {
				c.addFaults(ctx, t, kp.Fault{Op: "unwrap", Kind: "status", Status: 503, Count: 100000})
				before := c.unwraps(ctx, t)
				if _, err := s.secrets.Update(ctx, sec.Namespace, sec.Name, map[string][]byte{
					kpkey.RootKeyIDKey: []byte(c.Lab.KPRootKeyID), kpkey.CiphertextKey: []byte(ctB)}); err != nil {
					t.Fatalf("%v", err)
				}
				normA := mustNormalize(t, c.Fixtures.A.Key)
				// Watch A's file while the synchronizer tries to unwrap the new version: until
				// it has made outageAttempts requests (a client that retries internally has
				// then given up at least once) and outageHold more, or the sync timeout.
				var tried time.Time
				deadline := time.Now().Add(c.syncTimeout())
				for {
					for _, n := range c.nodes(ctx, t) {
						files, err := keytree.Files(ctx, c.Driver, n, normA)
						if err != nil {
							t.Fatalf("node %s: failed to inspect keys tree: %v", n, err)
						}
						if len(files) == 0 {
							t.Fatalf("node %s: the synced key of Secret %s was removed while Key Protect failed (503 on every unwrap, %d requests): an outage must never remove a synced key",
								n, sec.Name, c.unwraps(ctx, t)-before)
						}
					}
					attempts := c.unwraps(ctx, t) - before
					if tried.IsZero() && attempts >= outageAttempts {
						tried = time.Now()
					}
					if !tried.IsZero() && time.Since(tried) > outageHold {
						return
					}
					if time.Now().After(deadline) {
						if attempts == 0 {
							t.Fatalf("the synchronizer made no unwrap request for the new version of Secret %s within %s", sec.Name, c.syncTimeout())
						}
						return
					}
					select {
					case <-ctx.Done():
						t.Fatalf("%v", ctx.Err())
					case <-time.After(c.pollInterval()):
					}
				}
			}},
			{Name: "once Key Protect answers again, the new version's key replaces the old", Fn: func(ctx context.Context, t T, c *Context) {
				if err := kp.ClearFaults(ctx, nil, c.Lab.MockKPAdminURL); err != nil {
					t.Fatalf("%v", err)
				}
				if _, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.B.Key)); err != nil {
					t.Fatalf("new version: %v", err)
				}
				if err := c.waitNoFile(ctx, mustNormalize(t, c.Fixtures.A.Key)); err != nil {
					t.Fatalf("old version: %v", err)
				}
			}},
		},
	}
}
