// Area hygiene: the keys tree holds only usable private keys, as a feature of its own and as
// the last assessment of every feature.

package conformance

import (
	"context"
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/suites/internal/keytree"
	"github.com/keysync-dev/keysync/suites/nodedriver"
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
			{Name: "with two keys synced the tree is clean", Fn: assessHygiene, Profile: ProfileRequired},
			{Name: "after one key is removed the tree is clean and the other key still pulls", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
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

// assessHygiene (required) audits every node's tree (nothing CRI-O cannot use: no symlink,
// non-regular or non-key file, no temp file) and pulls the plain image.
func assessHygiene(ctx context.Context, t T, c *Context) {
	t.Helper()
	for _, n := range c.nodes(ctx, t) {
		problems, err := treeProblems(ctx, c.Driver, n)
		if err != nil {
			t.Fatalf("node %s: failed to audit keys tree: %v", n, err)
		}
		for _, p := range problems {
			t.Errorf("node %s: %s: %s", n, p.Path, p.Reason)
		}
	}
	c.pullEverywhere(ctx, t, c.Fixtures.Plain)
}

// treeProblems is every entry of node's tree that CRI-O would not use (its verdict) or that
// looks like a temp file: the required half of the hygiene rules (keytree.Audit also judges
// modes, the recommended half, see assessKeyModes).
func treeProblems(ctx context.Context, r keytree.Reader, node string) ([]crikeys.Problem, error) {
	entries, err := nodedriver.AuditKeys(ctx, r, node)
	if err != nil {
		return nil, err
	}
	var problems []crikeys.Problem
	for _, e := range entries {
		if keytree.IsTempName(path.Base(e.Path)) {
			problems = append(problems, crikeys.Problem{Path: e.Path, Reason: "temp file left in the keys tree"})
		}
		if err := e.Verdict.Err(); err != nil {
			problems = append(problems, crikeys.Problem{Path: e.Path, Reason: err.Error()})
		}
	}
	return problems, nil
}

// assessKeyModes (recommended) requires mode 0600 on every key file in the synchronizer's
// directory (SYNC_SUBDIR; the whole tree when the lab names none).
func assessKeyModes(ctx context.Context, t T, c *Context) {
	t.Helper()
	for _, n := range c.nodes(ctx, t) {
		entries, err := c.Driver.ListKeys(ctx, n)
		if err != nil {
			t.Fatalf("node %s: failed to list keys tree: %v", n, err)
		}
		for _, e := range entries {
			if e.Type != nodedriver.TypeFile || !inSyncDir(c.Lab.SyncSubdir, e.Path) {
				continue
			}
			if e.Mode.Perm() != 0o600 {
				t.Errorf("node %s: %s", n, modeProblem(e))
			}
		}
	}
}

func inSyncDir(sub, p string) bool { return sub == "" || strings.HasPrefix(p, sub+"/") }

func modeProblem(e nodedriver.Entry) string {
	return fmt.Sprintf("%s has mode %04o, want 0600 (the key is readable beyond its owner)", e.Path, e.Mode.Perm())
}
