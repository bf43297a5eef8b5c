package conformance

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/suites/internal/keytree"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
	"github.com/keysync-dev/keysync/suites/internal/tracker"
)

// scope is a feature's per-run state: its tracker and Secret client.
type scope struct {
	tr      tracker.Tracker
	secrets secrets.Client
	// pullSecrets are the feature's registry pull Secrets by namespace (scopePullSecret).
	pullSecrets map[string]string
}

// newScope starts a feature: it records cleanup on t (so a fatal Setup still cleans up) and
// makes Secret deletions wait for the synchronizer to remove the Secret's key files.
func newScope(ctx context.Context, t T, c *Context) *scope {
	s := &scope{}
	s.secrets = secrets.Client{Clientset: c.Client, Tracker: &s.tr,
		AfterDelete: func(ctx context.Context, sec *corev1.Secret) error { return c.waitKeysGone(ctx, sec) }}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*c.syncTimeout())
		defer cancel()
		if err := s.tr.Cleanup(cctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return s
}

// waitKeysGone waits until no node holds a file with the bytes of a deleted key Secret.
func (c *Context) waitKeysGone(ctx context.Context, s *corev1.Secret) error {
	if s.Type != corev1.SecretType(kpkey.SecretTypeKey) {
		return nil
	}
	for _, data := range s.Data {
		norm, err := crikeys.Normalize(data)
		if err != nil {
			continue // never written
		}
		if err := c.waitNoFile(ctx, norm); err != nil {
			return err
		}
	}
	return nil
}

// ownKey records key (PEM, as put in a Secret) as created by this run: the node driver may
// read back the file the synchronizer writes for it (nodedriver.Guard), and no other.
// Bytes CRI-O would not accept are never written, so they are not recorded.
func (c *Context) ownKey(key []byte) {
	if c.Owned == nil {
		return
	}
	if norm, err := crikeys.Normalize(key); err == nil {
		c.Owned.Add(norm)
	}
}

func (c *Context) keySecret(name string, key []byte) *corev1.Secret {
	c.ownKey(key)
	return secrets.Key(c.Namespace, c.nameFor(name), c.RunID, map[string][]byte{keyDataKey: key})
}

// syncKey creates a key Secret for img and waits for its file on every node.
func (c *Context) syncKey(ctx context.Context, t T, s *scope, name string, img Image) *corev1.Secret {
	t.Helper()
	sec := s.secrets.MustCreate(ctx, t, c.keySecret(name, img.Key))
	if _, err := c.waitFile(ctx, mustNormalize(t, img.Key)); err != nil {
		t.Fatalf("Secret %s/%s: %v", sec.Namespace, sec.Name, err)
	}
	return sec
}

// requireNoKey fails the setup when a node already holds key (left by another tenant).
func (c *Context) requireNoKey(ctx context.Context, t T, img Image) {
	t.Helper()
	norm := mustNormalize(t, img.Key)
	for _, n := range c.nodes(ctx, t) {
		files, err := keytree.Files(ctx, c.Driver, n, norm)
		if err != nil {
			t.Fatalf("node %s: failed to inspect keys tree: %v", n, err)
		}
		if len(files) > 0 {
			t.Fatalf("node %s already holds the key of fixture %s at %s; remove the Secret that syncs it (label %s=%s marks leftovers of earlier runs)",
				n, img.Name, files[0].Path, secrets.LabelManagedBy, secrets.ManagedByValue)
		}
	}
}
