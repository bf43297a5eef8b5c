package conformance

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/keysync-dev/keysync/lab"
)

// TestSweepPlanted: `keysync conformance cleanup`'s node side removes a killed run's planted
// files on a lab with capability plant, and touches nothing on a lab without it.
func TestSweepPlanted(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "keys")
	if err := os.MkdirAll(filepath.Join(root, "synced"), 0o700); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(root, "synced", "ks-dead01-foreign.pem")
	users := filepath.Join(root, "synced", "user.pem")
	for _, p := range []string{planted, users} {
		if err := os.WriteFile(p, []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	env := lab.Env{NodeAccess: lab.AccessHost, KeysRoot: root}
	if done, err := SweepPlanted(ctx, env, nil, "", false); err != nil || len(done) != 0 {
		t.Fatalf("without capability plant: %v, %v; want nothing", done, err)
	}
	env.Capabilities = []lab.Capability{lab.CapPlant}
	done, err := SweepPlanted(ctx, env, nil, "dead01", false)
	if err != nil || len(done) != 1 {
		t.Fatalf("SweepPlanted = %v, %v; want the planted file", done, err)
	}
	if _, err := os.Lstat(planted); err == nil {
		t.Errorf("%s is still there", planted)
	}
	if _, err := os.Lstat(users); err != nil {
		t.Errorf("%s was removed: %v", users, err)
	}
}
