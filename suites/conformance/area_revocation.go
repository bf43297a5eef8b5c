// Area revocation: deleting a key Secret removes its file and revokes new pulls.

package conformance

import (
	"context"

	corev1 "k8s.io/api/core/v1"
)

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
			{Name: "deleting the Secret removes the key file from every node", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				if err := s.secrets.Delete(ctx, sec.Namespace, sec.Name); err != nil {
					t.Fatalf("%v", err)
				}
				if err := c.waitNoFile(ctx, mustNormalize(t, c.Fixtures.A.Key)); err != nil {
					t.Fatalf("%v", err)
				}
			}},
			{Name: "pulling the encrypted fixture fails again", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				c.pullFailsEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
		},
	}
}
