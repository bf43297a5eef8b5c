package conformance

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/suites/internal/plant"
)

// TestWroteThrough: the failure message of a synchronizer that wrote through a planted symlink
// names the link, the target and what the target holds now; a run that is ending gets the
// message without a second look, and says so.
func TestWroteThrough(t *testing.T) {
	t.Parallel()
	keyA, keyB := "-----BEGIN PRIVATE KEY-----\nA\n", "-----BEGIN PRIVATE KEY-----\nB\n"
	digestA, digestB := plant.Digest([]byte(keyA)), plant.Digest([]byte(keyB))
	tests := []struct {
		name, now string
		cancelled bool
		want      string
	}{
		{name: "the rotated key", now: keyB, want: "now holds the rotated key"},
		{name: "the key before the rotation", now: keyA, want: "now holds the Secret's key from before the rotation"},
		{name: "truncated", now: "", want: "now holds nothing (truncated)"},
		{name: "other bytes", now: "something else", want: "now holds other bytes"},
		{name: "run ending", now: keyB, cancelled: true, want: "now holds " + notLookedAgain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			target := filepath.Join(dir, "target.pem")
			if err := os.WriteFile(target, []byte(tt.now), 0o600); err != nil {
				t.Fatal(err)
			}
			c := &Context{Planter: plant.New(plant.Host{Stage: dir})}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelled {
				cancel()
			}
			link := plant.Planted{Node: "n1", Path: filepath.Join(dir, "keys", "k.pem")}
			err := c.wroteThrough(ctx, "n1", link, plant.Planted{Node: "n1", Path: target}, digestA, digestB)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range []string{"node n1: the synchronizer wrote through the symlink planted at " + link.Path, "its target " + target, tt.want, "never follow a symlink"} {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
}
