package contract_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/agentbin"
)

// TestContract runs every transport through the same cases: the node lab's in-process agent,
// the cluster driver's pod exec (with an exec that runs the agent binary), and the kind
// driver's docker exec (a container FROM scratch holding the agent; needs dockerd).
func TestContract(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	data, err := agentbin.Build(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), agentbin.Name)
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	k := newKeys(t)
	transports := []struct {
		name  string
		start func(t *testing.T) subject
	}{
		{"in-process", inProcess},
		{"pod exec", func(t *testing.T) subject { return podExec(t, bin) }},
		{"docker exec", func(t *testing.T) subject { return dockerExec(t, bin) }},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			s := tr.start(t)
			// A missing keys tree is empty.
			if got, err := s.drv.ListKeys(ctx, s.node); err != nil || len(got) != 0 {
				t.Fatalf("missing tree: %v, %v; want empty", got, err)
			}
			s.populate(t, tree(k))
			for _, c := range cases(k) {
				t.Run(c.name, func(t *testing.T) { c.check(ctx, t, s) })
			}
		})
	}
}

// contractCase is one case of the table.
type contractCase struct {
	name  string
	check func(ctx context.Context, t *testing.T, s subject)
}

func cases(k keys) []contractCase {
	return []contractCase{
		{"list: every entry, symlinks as symlinks, paths with spaces", func(ctx context.Context, t *testing.T, s subject) {
			got, err := s.drv.ListKeys(ctx, s.node)
			if err != nil {
				t.Fatal(err)
			}
			want := []nodedriver.Entry{
				{Path: "synced", Mode: 0o700, Type: nodedriver.TypeDir},
				{Path: "synced/good.pem", Mode: 0o600, Size: int64(len(k.good)), Type: nodedriver.TypeFile},
				{Path: "synced/link", Mode: 0o777, Type: nodedriver.TypeSymlink},
				{Path: "synced/notes.txt", Mode: 0o644, Size: int64(len(k.text)), Type: nodedriver.TypeFile},
				{Path: "synced/pub.pem", Mode: 0o600, Size: int64(len(k.public)), Type: nodedriver.TypeFile},
				{Path: "synced/with space.pem", Mode: 0o600, Size: int64(len(k.good)), Type: nodedriver.TypeFile},
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ListKeys =\n%+v\nwant\n%+v", got, want)
			}
		}},
		{"read: the exact bytes", func(ctx context.Context, t *testing.T, s subject) {
			for _, p := range []string{"synced/good.pem", "synced/with space.pem"} {
				got, err := s.drv.ReadKey(ctx, s.node, p)
				if err != nil || !bytes.Equal(got, k.good) {
					t.Errorf("ReadKey(%s) = %d bytes, %v; want the key's %d", p, len(got), err, len(k.good))
				}
			}
		}},
		{"read of a missing file: ExitNotFound, fs.ErrNotExist", func(ctx context.Context, t *testing.T, s subject) {
			if _, err := s.drv.ReadKey(ctx, s.node, "synced/missing.pem"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("ReadKey: %v, want fs.ErrNotExist", err)
			}
			if code, _, _ := raw(ctx, t, s, nodedriver.OpReadKey, "synced/missing.pem"); code != nodedriver.ExitNotFound {
				t.Errorf("exit status %d, want %d", code, nodedriver.ExitNotFound)
			}
		}},
		{"read of a symlink or a directory: refused, not followed", func(ctx context.Context, t *testing.T, s subject) {
			for _, p := range []string{"synced/link", "synced"} {
				got, err := s.drv.ReadKey(ctx, s.node, p)
				if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, nodedriver.ErrUnsupported) ||
					!strings.Contains(err.Error(), "not a regular file") || len(got) != 0 {
					t.Errorf("ReadKey(%s) = %d bytes, %v; want a plain error \"not a regular file\"", p, len(got), err)
				}
			}
		}},
		{"bad path ../x: rejected by the client and by the agent", func(ctx context.Context, t *testing.T, s subject) {
			if _, err := s.drv.ReadKey(ctx, s.node, "../x"); err == nil || !strings.Contains(err.Error(), "inside the keys tree") {
				t.Errorf("ReadKey(../x): %v", err)
			}
			code, stdout, stderr := raw(ctx, t, s, nodedriver.OpReadKey, "../x")
			if code != 1 || stdout != "" || !strings.Contains(stderr, "inside the keys tree") {
				t.Errorf("agent read-key ../x: exit %d, stdout %q, stderr %q; want 1, nothing, the reason", code, stdout, stderr)
			}
		}},
		{"audit: CRI-O's verdicts and digests, no key bytes", func(ctx context.Context, t *testing.T, s subject) {
			got, err := s.drv.AuditKeys(ctx, s.node)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]struct {
				v   nodedriver.Verdict
				sum string
			}{
				"synced":                {nodedriver.VerdictOK, ""},
				"synced/good.pem":       {nodedriver.VerdictOK, nodedriver.SHA256Hex(k.good)},
				"synced/link":           {nodedriver.VerdictSymlink, ""},
				"synced/notes.txt":      {nodedriver.VerdictUnknownType, nodedriver.SHA256Hex(k.text)},
				"synced/pub.pem":        {nodedriver.VerdictUnknownType, nodedriver.SHA256Hex(k.public)},
				"synced/with space.pem": {nodedriver.VerdictOK, nodedriver.SHA256Hex(k.good)},
			}
			if len(got) != len(want) {
				t.Errorf("audit has %d entries, want %d: %+v", len(got), len(want), got)
			}
			for _, e := range got {
				if w, ok := want[e.Path]; !ok || e.Verdict != w.v || e.SHA256 != w.sum {
					t.Errorf("%s: %s %q, want %s %q", e.Path, e.Verdict, e.SHA256, w.v, w.sum)
				}
			}
			code, stdout, _ := raw(ctx, t, s, nodedriver.OpAudit)
			body := strings.Split(string(k.good), "\n")[1]
			if code != 0 || strings.Contains(stdout, body) || strings.Contains(stdout, "PRIVATE KEY") {
				t.Errorf("agent audit: exit %d; its answer holds key bytes:\n%s", code, stdout)
			}
		}},
		{"guarded: a foreign key's bytes never reach the runner, the run's own do", func(ctx context.Context, t *testing.T, s subject) {
			owned := &nodedriver.OwnedKeys{}
			g := nodedriver.Guard(asDriver{s.drv}, owned)
			body := strings.Split(string(k.good), "\n")[1]
			var seen []string
			for _, p := range []string{"synced/good.pem", "synced/with space.pem", "synced/link"} {
				got, err := g.ReadKey(ctx, s.node, p)
				if err == nil || len(got) != 0 {
					t.Errorf("guarded ReadKey(%s) = %d bytes, %v; want refused", p, len(got), err)
				}
				seen = append(seen, fmt.Sprintf("%q %v", got, err))
			}
			if _, err := g.ReadKey(ctx, s.node, "synced/good.pem"); !errors.Is(err, nodedriver.ErrNotOwned) {
				t.Errorf("guarded ReadKey(good.pem): %v, want ErrNotOwned", err)
			}
			list, err := g.ListKeys(ctx, s.node)
			audit, aerr := g.(nodedriver.Auditor).AuditKeys(ctx, s.node)
			seen = append(seen, fmt.Sprintf("%+v %v %+v %v", list, err, audit, aerr))
			if all := strings.Join(seen, "\n"); strings.Contains(all, body) || strings.Contains(all, "PRIVATE KEY") {
				t.Errorf("key bytes reached the runner:\n%s", all)
			}
			owned.Add(k.good) // now it is this run's key
			if got, err := g.ReadKey(ctx, s.node, "synced/good.pem"); err != nil || !bytes.Equal(got, k.good) {
				t.Errorf("guarded ReadKey of an owned key = %d bytes, %v", len(got), err)
			}
		}},
		{"watch: the entries at its start, then every new version with its verdict, no key bytes", func(ctx context.Context, t *testing.T, s subject) {
			checkWatch(ctx, t, s, k)
		}},
		{"unknown operation: ExitUnsupported", func(ctx context.Context, t *testing.T, s subject) {
			if code, _, stderr := raw(ctx, t, s, "frobnicate"); code != nodedriver.ExitUnsupported || !strings.Contains(stderr, "frobnicate") {
				t.Errorf("exit %d, stderr %q; want %d naming the operation", code, stderr, nodedriver.ExitUnsupported)
			}
		}},
		{"pull without a runtime: an error quoting the reference", func(ctx context.Context, t *testing.T, s subject) {
			err := s.drv.PullImage(ctx, s.node, "registry.test/x:1")
			if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, nodedriver.ErrUnsupported) || !strings.Contains(err.Error(), "registry.test/x:1") {
				t.Errorf("PullImage: %v", err)
			}
		}},
	}
}

// asDriver makes a transport's client a nodedriver.Driver for nodedriver.Guard.
type asDriver struct{ driver }

func (asDriver) Name() string                            { return "contract" }
func (asDriver) Nodes(context.Context) ([]string, error) { return nil, nil }
func (asDriver) RunImage(context.Context, string, string) (string, error) {
	return "", nodedriver.ErrUnsupported
}

// checkWatch watches the tree while entries are added to it: the watch reports what was there
// (initial), is ready before the additions, and reports the additions' last versions with
// CRI-O's verdicts.
func checkWatch(ctx context.Context, t *testing.T, s subject, k keys) {
	w, ok := s.drv.(nodedriver.Watcher)
	if !ok {
		t.Fatalf("the driver %T has no tree watch", s.drv)
	}
	var mu sync.Mutex
	var events []nodedriver.WatchEvent
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- w.WatchKeys(ctx, s.node, 4*time.Second, func(e nodedriver.WatchEvent) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
			if e.Kind == nodedriver.WatchReady {
				close(ready)
			}
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("watch ended before it was ready: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("watch not ready within a minute")
	}
	s.populate(t, []treeEntry{
		{path: "synced/new", mode: 0o700, dir: true},
		{path: "synced/new/late.pem", mode: 0o600, data: k.good},
		{path: "synced/late.txt", mode: 0o600, data: k.text},
	})
	if err := <-done; err != nil {
		t.Fatalf("WatchKeys: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	initial := map[string]nodedriver.Verdict{}
	last := map[string]nodedriver.AuditEntry{}
	readyAt := -1
	for i, e := range events {
		switch e.Kind {
		case nodedriver.WatchInitial:
			if readyAt >= 0 {
				t.Errorf("initial line after ready: %+v", e)
			}
			initial[e.Entry.Path] = e.Entry.Verdict
		case nodedriver.WatchReady:
			readyAt = i
		case nodedriver.WatchVersion:
			last[e.Entry.Path] = e.Entry
		}
	}
	wantInitial := map[string]nodedriver.Verdict{"synced": nodedriver.VerdictOK, "synced/good.pem": nodedriver.VerdictOK,
		"synced/link": nodedriver.VerdictSymlink, "synced/notes.txt": nodedriver.VerdictUnknownType,
		"synced/pub.pem": nodedriver.VerdictUnknownType, "synced/with space.pem": nodedriver.VerdictOK}
	if !reflect.DeepEqual(initial, wantInitial) {
		t.Errorf("initial entries %v, want %v", initial, wantInitial)
	}
	want := map[string]struct {
		v   nodedriver.Verdict
		sum string
	}{
		"synced/new":          {nodedriver.VerdictOK, ""},
		"synced/new/late.pem": {nodedriver.VerdictOK, nodedriver.SHA256Hex(k.good)},
		"synced/late.txt":     {nodedriver.VerdictUnknownType, nodedriver.SHA256Hex(k.text)},
	}
	for p, w := range want {
		if got, ok := last[p]; !ok || got.Verdict != w.v || got.SHA256 != w.sum {
			t.Errorf("last version of %s: %+v (seen %v), want %s %q", p, got, ok, w.v, w.sum)
		}
	}
	if t.Failed() {
		t.Logf("events: %+v", events)
	}
}

// raw runs the agent through s's transport without the client's checks: its exit status and
// streams.
func raw(ctx context.Context, t *testing.T, s subject, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code, err := s.raw.RunAgent(ctx, s.node, args, &out, &errb)
	if err != nil {
		t.Fatalf("transport failed: %v", err)
	}
	return code, out.String(), errb.String()
}
