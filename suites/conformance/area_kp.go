// Area kp: a kp-key Secret is unwrapped through Key Protect (the lab's mockkp, or the
// cluster's own where keyprotect-config exists: see useKP) once per node.

package conformance

import (
	"context"
	"time"

	"github.com/keysync-dev/keysync/suites/internal/kp"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
)

// 3. A kp-key Secret is unwrapped once per node and its image pulls.
func featureKPKey() Feature {
	var before int64
	var target kpTarget
	return Feature{
		Name: "a kp-key Secret is unwrapped once per node and its image pulls", Area: AreaKP,
		Setup: func(ctx context.Context, t T, c *Context) {
			s := newScope(ctx, t, c)
			target = c.useKP(ctx, t, s, true)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.ownKey(c.Fixtures.A.Key)
			ct, err := kp.Wrap(ctx, target.wrap, target.rootKeyID, c.Fixtures.A.Key)
			if err != nil {
				t.Fatalf("failed to wrap the fixture key with Key Protect (live %v): %v", target.live, err)
			}
			// Recorded before the Secret so that it runs after its deletion: the unwrapped key
			// must be gone before the next feature checks that no node holds it.
			norm := mustNormalize(t, c.Fixtures.A.Key)
			s.tr.Add("key file of the kp-key Secret", func(ctx context.Context) error { return c.waitNoFile(ctx, norm) })
			if !target.live {
				before = c.unwraps(ctx, t)
			}
			s.secrets.MustCreate(ctx, t, secrets.KPKey(c.Namespace, c.nameFor("kp-a"), c.RunID, target.rootKeyID, ct))
		},
		Assess: []Step{
			{Name: "the unwrapped key file appears on every node", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				if _, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.A.Key)); err != nil {
					t.Fatalf("%v", err)
				}
			}},
			{Name: "the encrypted fixture pulls", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
			{Name: "mockkp counted exactly one unwrap per node", Profile: ProfileRecommended, Fn: func(ctx context.Context, t T, c *Context) {
				if target.live {
					t.Skipf("counting unwraps needs the lab's mockkp; the cluster's own Key Protect has no request counters")
				}
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
