// Area foreign: what others put in the keys tree. A synchronizer shares CRI-O's keys tree with
// other tools and people: it removes only the files it wrote, and a symlink someone put at the
// path of one of its key files is replaced by the key, never followed (writing through it puts
// the key wherever the link points, outside the tree; leaving it fails every pull on the node:
// CRI-O refuses symlinks anywhere in decryption_keys_path).
//
// Both checks are required: the runbook's keys tree is CRI-O's, not the synchronizer's alone —
// a key another tool installed must keep decrypting its images, and nothing outside
// decryption_keys_path may be written — and both are observable from outside any
// implementation. The suite plants through the lab (capability plant: the runner writes to the
// node itself); the node agent stays read-only on the tree, so on any cluster both skip.

package conformance

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keysync-dev/keysync/suites/internal/plant"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// foreignDirs are where the foreign-files feature plants (relative to the keys root): the
// synchronizer's own directory and the root of the tree.
func foreignDirs(syncSubdir string) []string {
	if syncSubdir == "" || syncSubdir == "." {
		return []string{""}
	}
	return []string{syncSubdir, ""}
}

// 20. Files the synchronizer did not write stay, whatever it syncs and prunes.
func featureForeignFiles() Feature {
	var s *scope
	var planted []plant.Planted
	return Feature{
		Name: "key files the synchronizer did not write stay in the keys tree", Area: AreaForeign,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requirePlanter(t)
			root := nodeKeysRoot(c.Lab)
			for _, n := range c.nodes(ctx, t) {
				for _, dir := range foreignDirs(c.Lab.SyncSubdir) {
					// A real private key (CRI-O uses it), as another tool would install one.
					p := path.Join(root, dir, c.nameFor("foreign.pem"))
					planted = append(planted, c.plantFile(ctx, t, s, n, p, newKeyPEM(t)))
				}
			}
		},
		Assess: []Step{
			{Name: "a key Secret synced and deleted leaves every planted key file as it was", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				key := newKeyPEM(t)
				sec := s.secrets.MustCreate(ctx, t, c.keySecret("foreign-own", key))
				norm := mustNormalize(t, key)
				if _, err := c.waitFile(ctx, norm); err != nil {
					t.Fatalf("Secret %s/%s: %v", sec.Namespace, sec.Name, err)
				}
				if err := s.secrets.Delete(ctx, sec.Namespace, sec.Name); err != nil {
					t.Fatalf("%v", err)
				}
				if err := c.waitNoFile(ctx, norm); err != nil {
					t.Fatalf("Secret %s/%s deleted: %v", sec.Namespace, sec.Name, err)
				}
				c.checkPlanted(ctx, t, planted, "after a key Secret was synced and deleted")
			}},
		},
	}
}

// checkPlanted fails t for every planted file that is no longer in the tree as planted.
func (c *Context) checkPlanted(ctx context.Context, t T, planted []plant.Planted, when string) {
	t.Helper()
	root := nodeKeysRoot(c.Lab)
	audits := map[string]map[string]nodedriver.AuditEntry{}
	for _, p := range planted {
		if audits[p.Node] == nil {
			entries, err := nodedriver.AuditKeys(ctx, c.Driver, p.Node)
			if err != nil {
				t.Fatalf("node %s: failed to audit the keys tree: %v", p.Node, err)
			}
			audits[p.Node] = map[string]nodedriver.AuditEntry{}
			for _, e := range entries {
				audits[p.Node][e.Path] = e
			}
		}
		rel, err := filepath.Rel(root, p.Path)
		if err != nil {
			t.Fatalf("planted %s is not under the keys root %s: %v", p.Path, root, err)
		}
		e, ok := audits[p.Node][rel]
		switch {
		case !ok:
			t.Errorf("node %s: %s %s was removed, a key file the synchronizer did not write (the suite put it there, as another tool or a person would): "+
				"a synchronizer removes only the files it wrote", p.Node, when, rel)
		case e.Type != nodedriver.TypeFile || e.SHA256 != p.Want.SHA256:
			t.Errorf("node %s: %s %s, a key file the synchronizer did not write, was replaced (now %s, %d bytes): a synchronizer changes only the files it wrote",
				p.Node, when, rel, e.Type, e.Size)
		}
	}
}

// 21. A symlink at a key file's path is replaced by the key, never written through.
func featureForeignSymlink() Feature {
	var s *scope
	var sec *corev1.Secret
	files := map[string]nodedriver.Entry{} // node → A's key file
	targets := map[string]plant.Planted{}  // node → the file outside the tree the links point to
	return Feature{
		Name: "a symlink planted at a key file's path is replaced, never followed", Area: AreaForeign,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requirePlanter(t)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.requireNoKey(ctx, t, c.Fixtures.B)
			normA, normB := mustNormalize(t, c.Fixtures.A.Key), mustNormalize(t, c.Fixtures.B.Key)
			// Recorded first so that it runs last: neither key may stay behind.
			s.tr.Add("key files of the Secret", func(ctx context.Context) error {
				return errors.Join(c.waitNoFile(ctx, normA), c.waitNoFile(ctx, normB))
			})
			sec = c.syncKey(ctx, t, s, "symlink", c.Fixtures.A)
			got, err := c.waitFile(ctx, normA)
			if err != nil {
				t.Fatalf("%v", err)
			}
			root := nodeKeysRoot(c.Lab)
			for n, e := range got {
				files[n] = e
				// Outside the tree, beside it: a file of the run's (a real key) a careless
				// synchronizer would overwrite.
				targets[n] = c.plantFile(ctx, t, s, n, path.Join(path.Dir(root), c.nameFor("symlink-target.pem")), newKeyPEM(t))
			}
		},
		Assess: []Step{
			{Name: "the rotated key replaces a symlink planted at its file's path; the link's target outside the tree is not written", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				c.ownKey(c.Fixtures.B.Key)
				digestA, digestB := plant.Digest(mustNormalize(t, c.Fixtures.A.Key)), plant.Digest(mustNormalize(t, c.Fixtures.B.Key))
				root := nodeKeysRoot(c.Lab)
				links := map[string]plant.Planted{}
				// Every pull on a node fails while its link is there: remove the links as soon
				// as the verdict is in (a link the synchronizer replaced stays replaced).
				defer func() {
					for _, l := range links {
						if err := c.Planter.Undo(context.WithoutCancel(ctx), l); err != nil {
							t.Errorf("%v", err)
						}
					}
				}()
				for n, e := range files {
					link := path.Join(root, e.Path)
					// Relative, so that it points to the same file wherever the tree is mounted
					// (a synchronizer's pod mounts /etc/crio).
					target, err := filepath.Rel(path.Dir(link), targets[n].Path)
					if err != nil {
						t.Fatalf("%v", err)
					}
					links[n] = c.plantSymlink(ctx, t, s, n, target, link)
				}
				planted := time.Now()
				if _, err := s.secrets.Update(ctx, sec.Namespace, sec.Name, map[string][]byte{keyDataKey: c.Fixtures.B.Key}); err != nil {
					t.Fatalf("%v", err)
				}
				state := map[string]string{} // node → what is still wrong
				err := wait.PollUntilContextTimeout(ctx, c.pollInterval(), c.syncTimeout(), true, func(ctx context.Context) (bool, error) {
					clear(state)
					for n, l := range links {
						target, err := c.Planter.Stat(ctx, n, targets[n].Path)
						if err != nil {
							state[n] = err.Error()
							continue
						}
						if target != targets[n].Want {
							return false, c.wroteThrough(ctx, n, l, targets[n], digestA, digestB)
						}
						if msg := c.symlinkState(ctx, n, l, digestB); msg != "" {
							state[n] = msg
						}
					}
					return len(state) == 0, nil
				})
				switch {
				case err == nil:
					t.Logf("the symlinks were replaced by the rotated key %.1fs after the rotation", time.Since(planted).Seconds())
				case wait.Interrupted(err):
					for n, msg := range state {
						t.Errorf("node %s: %s after the rotation: %s", n, c.syncTimeout(), msg)
					}
					t.FailNow()
				default:
					t.Fatalf("%v", err)
				}
			}},
			{Name: "images for the rotated key pull", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.B.Ref)
			}},
		},
	}
}

// symlinkState says what is still wrong on node after a symlink l was planted at a key file's
// path and the Secret rotated to the key with digest want ("" when nothing is: the link is gone
// and the key is in the tree as a file).
func (c *Context) symlinkState(ctx context.Context, node string, l plant.Planted, want string) string {
	entries, err := nodedriver.AuditKeys(ctx, c.Driver, node)
	if err != nil {
		return fmt.Sprintf("failed to audit the keys tree: %v", err)
	}
	rel, _ := filepath.Rel(nodeKeysRoot(c.Lab), l.Path)
	landed := false
	for _, e := range entries {
		if e.Path == rel && e.Type == nodedriver.TypeSymlink {
			return fmt.Sprintf("the symlink planted at %s is still in the keys tree (CRI-O fails every pull on the node while it is there): "+
				"the synchronizer neither replaced it with the rotated key nor removed it", rel)
		}
		if e.Type == nodedriver.TypeFile && e.SHA256 == want {
			landed = true
		}
	}
	if !landed {
		return "the rotated key is not in the keys tree as a file"
	}
	return ""
}

// wroteThrough describes a symlink target that no longer holds what was planted. The target is
// read again after a moment: a synchronizer writing through the link truncates the target
// before it writes, and the first look may fall in between. A run that is ending does not
// wait or look again, and says so.
func (c *Context) wroteThrough(ctx context.Context, node string, link, target plant.Planted, digestA, digestB string) error {
	what := notLookedAgain
	select {
	case <-ctx.Done():
	case <-time.After(500 * time.Millisecond):
		what = "bytes that could not be read again"
		if info, err := c.Planter.Stat(ctx, node, target.Path); err == nil {
			switch info.SHA256 {
			case digestB:
				what = "the rotated key"
			case digestA:
				what = "the Secret's key from before the rotation (written on a resync)"
			case plant.Digest(nil):
				what = "nothing (truncated)"
			default:
				what = "other bytes"
			}
		}
	}
	return fmt.Errorf("node %s: the synchronizer wrote through the symlink planted at %s: its target %s, outside the keys tree, now holds %s "+
		"(a synchronizer must never follow a symlink: rename a staged file over it)", node, link.Path, target.Path, what)
}

// notLookedAgain is what wroteThrough says of the target's bytes when the run is ending.
const notLookedAgain = "other bytes than planted (not looked at again: the run is ending)"
