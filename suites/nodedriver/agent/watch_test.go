package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/internal/syncbuf"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// TestWatch: a file written in place is seen empty first (the partial version a staging
// writer never shows), a renamed-in file only complete, a chmod is a new version, removals
// are reported, and no line holds key bytes.
func TestWatch(t *testing.T) {
	root := t.TempDir()
	key := testKey(t)
	if err := os.WriteFile(filepath.Join(root, "before.pem"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := New(Options{KeysRoot: root, CRIEndpoint: "/nonexistent.sock"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	var out syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Serve(context.Background(), n, []string{nodedriver.OpWatch, "3s"}, &out, os.Stderr)
	}()
	for !strings.Contains(out.String(), "ready ") {
		time.Sleep(10 * time.Millisecond)
	}
	stage := filepath.Join(t.TempDir(), "staged")
	steps := []func() error{
		func() error { return os.Mkdir(filepath.Join(root, "synced"), 0o700) },
		func() error { return os.WriteFile(filepath.Join(root, "synced", "inplace.pem"), nil, 0o600) },
		func() error { return os.WriteFile(filepath.Join(root, "synced", "inplace.pem"), key, 0o600) },
		func() error { return os.WriteFile(stage, key, 0o600) },
		func() error { return os.Rename(stage, filepath.Join(root, "synced", "renamed.pem")) },
		func() error { return os.Chmod(filepath.Join(root, "synced", "renamed.pem"), 0o644) },
		func() error { return os.Remove(filepath.Join(root, "before.pem")) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := <-done; code != 0 {
		t.Fatalf("watch exited %d", code)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		e, err := nodedriver.ParseWatchLine(line)
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == nodedriver.WatchReady {
			got = append(got, "ready")
			continue
		}
		got = append(got, strings.TrimSpace(string(e.Kind)+" "+e.Entry.Path+" "+string(e.Entry.Verdict)+" "+e.Entry.Mode.String()))
	}
	want := []string{
		"initial before.pem ok -rw-------",
		"ready",
		"version synced ok -rwx------",
		"version synced/inplace.pem empty -rw-------",
		"version synced/inplace.pem ok -rw-------",
		"version synced/renamed.pem ok -rw-------",
		"version synced/renamed.pem ok -rw-r--r--",
		"removed before.pem  ----------",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("watch saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(out.String(), "PRIVATE KEY") || strings.Contains(out.String(), strings.Split(string(key), "\n")[1]) {
		t.Errorf("the watch's output holds key bytes")
	}
}

// TestWatchBadDuration: a malformed or unbounded duration is a usage error, not a hang.
func TestWatchBadDuration(t *testing.T) {
	n, err := New(Options{KeysRoot: t.TempDir(), CRIEndpoint: "/nonexistent.sock"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, d := range []string{"soon", "0s", "-1s", "31m"} {
		var out, errb bytes.Buffer
		if code := Serve(context.Background(), n, []string{nodedriver.OpWatch, d}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "duration") {
			t.Errorf("watch %s: exit %d, stderr %q; want a failure naming the duration", d, code, errb.String())
		}
	}
}

func testKey(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestWatchCancel: a cancelled context ends the watch at once, not at its duration.
func TestWatchCancel(t *testing.T) {
	n, err := New(Options{KeysRoot: t.TempDir(), CRIEndpoint: "/nonexistent.sock"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() { done <- n.Watch(ctx, 10*time.Minute, &out) }()
	for !strings.Contains(out.String(), "ready ") {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch still runs 5s after its context was cancelled")
	}
}
