// Area hygiene: the keys tree holds only usable private keys, as a feature of its own and as
// the last assessment of every feature.

package conformance

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/keysync-dev/keysync/suites/internal/keytree"
)

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
