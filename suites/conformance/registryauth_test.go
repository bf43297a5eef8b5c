package conformance

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// fakeAuthBase records the credentials each pull and run carried.
type fakeAuthBase struct {
	nodedriver.Driver
	got []string
}

func (f *fakeAuthBase) PullImageAuth(_ context.Context, _, _ string, auth []byte) error {
	f.got = append(f.got, "pull "+string(auth))
	return nil
}

func (f *fakeAuthBase) RunImageArgsAuth(_ context.Context, _, _ string, _ []string, auth []byte) (string, error) {
	f.got = append(f.got, "run "+string(auth))
	return "", nil
}

// TestWithRegistryAuth: with registry-auth every pull and run sends the auth file as it is at
// that moment (a rotation rewrites it); without it the base driver is used as it is.
func TestWithRegistryAuth(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.json")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := &fakeAuthBase{}
	env := lab.Env{Capabilities: []lab.Capability{lab.CapRegistryAuth}, RegistryAuthFile: path}
	ap, d := withRegistryAuth(env, base)
	if ap == nil || d == nodedriver.Driver(base) {
		t.Fatal("registry-auth lab: the driver is not wrapped")
	}
	ctx := context.Background()
	write("one")
	if err := d.PullImage(ctx, "n", "r"); err != nil {
		t.Fatal(err)
	}
	write("two")
	if _, err := d.RunImage(ctx, "n", "r"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"pull one", "run two"}; len(base.got) != 2 || base.got[0] != want[0] || base.got[1] != want[1] {
		t.Fatalf("credentials sent %q, want %q", base.got, want)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := d.PullImage(ctx, "n", "r"); err == nil {
		t.Fatal("pull without the auth file: want an error")
	}
	if ap, d := withRegistryAuth(lab.Env{}, base); ap == nil || d != nodedriver.Driver(base) {
		t.Fatal("lab without registry-auth: the driver is wrapped")
	}
}

// watchingBase is a driver with a tree watch.
type watchingBase struct {
	fakeAuthBase
	watched int
}

func (w *watchingBase) WatchKeys(context.Context, string, time.Duration, func(nodedriver.WatchEvent)) error {
	w.watched++
	return nil
}

// TestWithRegistryAuthKeepsTheWatch: the wrapper must not hide the base driver's tree watch (it
// did once, and every "not for a moment" check then only logged that it could not watch).
func TestWithRegistryAuthKeepsTheWatch(t *testing.T) {
	t.Parallel()
	base := &watchingBase{}
	env := lab.Env{Capabilities: []lab.Capability{lab.CapRegistryAuth}, RegistryAuthFile: filepath.Join(t.TempDir(), "auth.json")}
	_, d := withRegistryAuth(env, base)
	if err := nodedriver.WatchKeys(context.Background(), nodedriver.Guard(d, &nodedriver.OwnedKeys{}), "n", time.Second, func(nodedriver.WatchEvent) {}); err != nil {
		t.Fatalf("WatchKeys through the registry-auth wrapper and the guard: %v", err)
	}
	if base.watched != 1 {
		t.Fatalf("the base driver's watch ran %d times, want 1", base.watched)
	}
}
