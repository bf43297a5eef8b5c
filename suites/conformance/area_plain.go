// Area plain: without its key an encrypted image does not pull; a key Secret makes it pull.

package conformance

import (
	"context"
	"errors"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/keysync-dev/keysync/suites/internal/events"
	"github.com/keysync-dev/keysync/suites/internal/keytree"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// 1. Without the key, the encrypted fixture does not pull; a plain image does.
func featureNoKey() Feature {
	return Feature{
		Name: "without its key an encrypted image does not pull", Area: AreaPlain,
		Setup: func(ctx context.Context, t T, c *Context) {
			newScope(ctx, t, c)
			c.requireNoKey(ctx, t, c.Fixtures.A)
		},
		Assess: []Step{
			{Name: "pulling the encrypted fixture fails with the missing-key error", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				c.pullFailsEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
			{Name: "a plain image still pulls", Profile: ProfileRequired, Independent: true, Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.Plain)
			}},
		},
	}
}

// 2. A key Secret becomes a file with the exact bytes (required), the image pulls and runs
// (required); the file is 0600 and a KeySynced Event is recorded (recommended).
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
			{Name: "the key file appears on every node with the exact bytes", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				norm := mustNormalize(t, c.Fixtures.A.Key)
				got, err := c.waitFile(ctx, norm)
				if err != nil {
					t.Fatalf("%v", err)
				}
				for n, e := range got {
					if keytree.IsTempName(path.Base(e.Path)) {
						t.Errorf("node %s: the key first appeared as %s, a temp file inside the keys tree (CRI-O reads it): stage outside the tree and rename complete files in", n, e.Path)
						continue
					}
					if sub := c.Lab.SyncSubdir; sub != "" && !strings.HasPrefix(e.Path, sub+"/") {
						t.Errorf("node %s: key file %s is outside the synchronizer's directory %s/", n, e.Path, sub)
					}
					// The exact bytes: waitFile found e by the node's audit, whose size and
					// SHA-256 are the Secret's key's (keytree.Files), without reading it back.
				}
			}},
			{Name: "the encrypted fixture pulls", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
			{Name: "the fixture runs and prints its marker where the lab can run containers", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
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
			{Name: "the key file has mode 0600", Profile: ProfileRecommended, Fn: func(ctx context.Context, t T, c *Context) {
				got, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.A.Key))
				if err != nil {
					t.Fatalf("%v", err)
				}
				for n, e := range got {
					if e.Mode.Perm() != 0o600 {
						t.Errorf("node %s: %s", n, modeProblem(e))
					}
				}
			}},
			{Name: "a KeySynced Event is recorded on the Secret", Profile: ProfileRecommended, Independent: true, Fn: func(ctx context.Context, t T, c *Context) {
				if _, err := events.Wait(ctx, c.Client, "Secret", sec.Namespace, sec.Name, ReasonKeySynced, c.syncTimeout(), c.pollInterval()); err != nil {
					t.Fatalf("%v", err)
				}
			}},
		},
	}
}
