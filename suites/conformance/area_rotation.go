// Area rotation: rotating a key Secret to another key replaces the file.

package conformance

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
)

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
			{Name: "the rotated Secret's new key replaces the old file", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				c.ownKey(c.Fixtures.B.Key)
				stop := c.watchTree(ctx, t)
				defer func() {
					for _, p := range stop() {
						t.Errorf("during the rotation the keys tree held a file CRI-O cannot use, if only for a moment (written in place, not renamed in complete?): %s", p)
					}
				}()
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
			{Name: "images for the new key pull", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.B.Ref)
			}},
			{Name: "images for the old key fail", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				c.pullFailsEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
		},
	}
}
