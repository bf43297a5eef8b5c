package plant

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDocker writes a stand-in for the docker CLI that knows one node container whose
// filesystem is this host's: `exec NODE CMD...` runs CMD here, `cp - NODE:DIR` unpacks the tar
// on stdin into DIR. Every call is appended to the returned log.
func fakeDocker(t *testing.T, node string) (bin, log string) {
	t.Helper()
	dir := t.TempDir()
	bin, log = filepath.Join(dir, "docker"), filepath.Join(dir, "calls.log")
	script := fmt.Sprintf(`#!/bin/sh
echo "$*" >> %q
case "$1" in
exec) [ "$2" = %q ] || { echo "Error: No such container: $2" >&2; exit 1; }; shift 2; exec "$@";;
cp) [ "$2" = - ] || { echo "bad cp: $*" >&2; exit 2; }
    [ "${3%%%%:*}" = %q ] || { echo "Error: No such container:path: $3" >&2; exit 1; }; exec tar -x -C "${3#*:}";;
esac
echo "unexpected docker call: $*" >&2; exit 2
`, log, node, node)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

// opsUnderTest are both node accesses over a temp "node": keys tree root/keys, stage root.
func opsUnderTest(t *testing.T) map[string]func(t *testing.T, stage string) Ops {
	return map[string]func(t *testing.T, stage string) Ops{
		"host": func(_ *testing.T, stage string) Ops { return Host{Stage: stage} },
		"docker": func(t *testing.T, stage string) Ops {
			bin, _ := fakeDocker(t, "node-1")
			return Docker{Stage: stage, Docker: bin}
		},
	}
}

func TestPlanter(t *testing.T) {
	ctx := context.Background()
	key := []byte("-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n")
	tests := []struct {
		name string
		// run plants and undoes under root (keys tree root/keys) and returns what went wrong.
		run func(pl *Planter, root string) error
	}{
		{name: "a file lands complete with mode 0600, nothing staged is left", run: func(pl *Planter, root string) error {
			p := filepath.Join(root, "keys", "synced", "foreign.pem")
			rec, err := pl.File(ctx, "node-1", p, key)
			if err != nil {
				return err
			}
			info, err := pl.Stat(ctx, "node-1", p)
			if err != nil || info != rec.Want || info.SHA256 != Digest(key) {
				return fmt.Errorf("Stat = %+v, %v; want %+v", info, err, rec.Want)
			}
			if fi, err := os.Lstat(p); err != nil || fi.Mode().Perm() != 0o600 {
				return fmt.Errorf("planted file: %v, %v; want mode 0600", fi, err)
			}
			return noStaged(root)
		}},
		{name: "a symlink replaces a file; undo removes it", run: func(pl *Planter, root string) error {
			p := filepath.Join(root, "keys", "synced", "key.pem")
			if err := os.WriteFile(p, key, 0o600); err != nil {
				return err
			}
			rec, err := pl.Symlink(ctx, "node-1", "../../target.pem", p)
			if err != nil {
				return err
			}
			if info, err := pl.Stat(ctx, "node-1", p); err != nil || info.Kind != KindSymlink || info.Target != "../../target.pem" {
				return fmt.Errorf("Stat = %+v, %v; want the symlink", info, err)
			}
			if err := pl.Undo(ctx, rec); err != nil {
				return err
			}
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("after undo: %v, want the symlink gone", err)
			}
			return noStaged(root)
		}},
		{name: "a symlink the synchronizer replaced by its key file stays replaced", run: func(pl *Planter, root string) error {
			p := filepath.Join(root, "keys", "synced", "key.pem")
			rec, err := pl.Symlink(ctx, "node-1", "/elsewhere", p)
			if err != nil {
				return err
			}
			if err := os.Remove(p); err != nil {
				return err
			}
			if err := os.WriteFile(p, key, 0o600); err != nil {
				return err
			}
			if err := pl.Undo(ctx, rec); err != nil {
				return err
			}
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("the synchronizer's file was removed: %v", err)
			}
			if n := len(pl.Pending()); n != 0 {
				return fmt.Errorf("%d pending after undo", n)
			}
			return nil
		}},
		{name: "a planted file goes even when something wrote into it", run: func(pl *Planter, root string) error {
			p := filepath.Join(root, "target.pem")
			rec, err := pl.File(ctx, "node-1", p, key)
			if err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte("written through a symlink"), 0o600); err != nil {
				return err
			}
			if info, err := pl.Stat(ctx, "node-1", p); err != nil || info.Kind != KindFile || info.SHA256 == rec.Want.SHA256 {
				return fmt.Errorf("Stat after the overwrite = %+v, %v; want another digest", info, err)
			}
			if err := pl.Undo(ctx, rec); err != nil {
				return err
			}
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("after undo: %v, want the file gone", err)
			}
			return nil
		}},
		{name: "undo all removes everything still planted, and forgets it", run: func(pl *Planter, root string) error {
			var paths []string
			for i := range 3 {
				p := filepath.Join(root, "keys", fmt.Sprintf("f%d.pem", i))
				paths = append(paths, p)
				if _, err := pl.File(ctx, "node-1", p, key); err != nil {
					return err
				}
			}
			if _, err := pl.Symlink(ctx, "node-1", "/x", filepath.Join(root, "keys", "link")); err != nil {
				return err
			}
			if n := len(pl.Pending()); n != 4 {
				return fmt.Errorf("%d pending, want 4", n)
			}
			if err := pl.UndoAll(ctx); err != nil {
				return err
			}
			entries, err := os.ReadDir(filepath.Join(root, "keys"))
			if err != nil || len(entries) != 1 || entries[0].Name() != "synced" {
				return fmt.Errorf("after UndoAll the tree holds %v (%v), want only synced/", entries, err)
			}
			if n := len(pl.Pending()); n != 0 {
				return fmt.Errorf("%d pending after UndoAll", n)
			}
			return pl.UndoAll(ctx) // nothing left: a second call does nothing
		}},
		{name: "stat tells nothing and other things apart", run: func(pl *Planter, root string) error {
			for p, want := range map[string]Kind{filepath.Join(root, "keys", "missing"): KindNone, filepath.Join(root, "keys", "synced"): KindOther} {
				if info, err := pl.Stat(ctx, "node-1", p); err != nil || info.Kind != want {
					return fmt.Errorf("Stat(%s) = %+v, %v; want %s", p, info, err, want)
				}
			}
			return nil
		}},
		{name: "relative and unclean paths are refused", run: func(pl *Planter, root string) error {
			for _, p := range []string{"keys/x", root + "/keys/../x", "/"} {
				if _, err := pl.File(ctx, "node-1", p, key); err == nil || !strings.Contains(err.Error(), "refusing to plant") {
					return fmt.Errorf("File(%q) = %v, want refused", p, err)
				}
			}
			return nil
		}},
	}
	for access, ops := range opsUnderTest(t) {
		for _, tc := range tests {
			t.Run(access+"/"+tc.name, func(t *testing.T) {
				root := t.TempDir()
				if err := os.MkdirAll(filepath.Join(root, "keys", "synced"), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := tc.run(New(ops(t, root)), root); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// noStaged fails when a staged leftover is in the stage directory.
func noStaged(root string) error {
	m, _ := filepath.Glob(filepath.Join(root, ".keysync-plant-*"))
	if len(m) > 0 {
		return fmt.Errorf("staged leftovers: %v", m)
	}
	return nil
}

// TestDockerCommands: the docker access names the node container in every call, copies with a
// tar stream into the stage and renames from there, and reports a missing container.
func TestDockerCommands(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	bin, log := fakeDocker(t, "kind-worker")
	d := Docker{Stage: root, Docker: bin}
	p := filepath.Join(root, "k.pem")
	if err := d.WriteFile(ctx, "kind-worker", p, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	calls, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(calls)), "\n")
	if len(lines) != 2 || lines[0] != "cp - kind-worker:"+root ||
		!strings.HasPrefix(lines[1], "exec kind-worker mv -f -T "+root+"/.keysync-plant-") || !strings.HasSuffix(lines[1], " "+p) {
		t.Errorf("docker calls:\n%s\nwant a cp into the stage and an exec mv to %s", calls, p)
	}
	if err := d.WriteFile(ctx, "kind-control-plane", p, []byte("k"), 0o600); err == nil || !strings.Contains(err.Error(), "No such container") {
		t.Errorf("WriteFile on an unknown container = %v, want docker's error", err)
	}
	if err := (Docker{Stage: root, Docker: filepath.Join(root, "no-docker")}).Remove(ctx, "kind-worker", p); err == nil {
		t.Error("Remove without a docker CLI succeeded")
	}
}

func TestParseStat(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	tests := []struct {
		out     string
		want    Info
		wantErr bool
	}{
		{out: "none\n", want: Info{Kind: KindNone}},
		{out: "other\n", want: Info{Kind: KindOther}},
		{out: "symlink ../../t.pem\n", want: Info{Kind: KindSymlink, Target: "../../t.pem"}},
		{out: "symlink a target with spaces\n", want: Info{Kind: KindSymlink, Target: "a target with spaces"}},
		{out: "file " + digest + "\n", want: Info{Kind: KindFile, SHA256: digest}},
		{out: "file nothex\n", wantErr: true},
		{out: "symlink \n", wantErr: true},
		{out: "none extra\n", wantErr: true},
		{out: "", wantErr: true},
		{out: "sh: sha256sum: not found\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.out), func(t *testing.T) {
			got, err := parseStat(tc.out)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseStat = %+v, %v; want %+v (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// racingOps runs before(p) before the Rename or Link of the ops it wraps: what the
// synchronizer does at the worst moment.
type racingOps struct {
	Ops
	beforeRename, beforeLink func(to string) error
	failLink                 bool // Link fails as a node would that cannot link (EPERM)
}

func (o racingOps) Rename(ctx context.Context, node, from, to string) error {
	if o.beforeRename != nil {
		if err := o.beforeRename(from); err != nil {
			return err
		}
	}
	return o.Ops.Rename(ctx, node, from, to)
}

func (o racingOps) Link(ctx context.Context, node, from, to string) error {
	if o.beforeLink != nil {
		if err := o.beforeLink(to); err != nil {
			return err
		}
	}
	if o.failLink {
		return fmt.Errorf("link %s %s: %w", from, to, fs.ErrPermission)
	}
	return o.Ops.Link(ctx, node, from, to)
}

// replaceWith stands in for the synchronizer renaming its key file over p.
func replaceWith(data string) func(p string) error {
	return func(p string) error {
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
			return err
		}
		return os.Rename(tmp, p)
	}
}

// TestUndoSymlinkRace: a symlink the synchronizer replaces by its key while Undo removes it
// leaves the key in place, and nothing of Undo's in the directory.
func TestUndoSymlinkRace(t *testing.T) {
	ctx := context.Background()
	for access, ops := range opsUnderTest(t) {
		t.Run(access+"/replaced after the check", func(t *testing.T) {
			root := t.TempDir()
			p := filepath.Join(root, "key.pem")
			inner := ops(t, root)
			pl := New(racingOps{Ops: inner, beforeRename: replaceWith("the synchronizer's key")})
			rec, err := pl.Symlink(ctx, "node-1", "../target.pem", p)
			if err != nil {
				t.Fatal(err)
			}
			if err := pl.Undo(ctx, rec); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(p); err != nil || string(got) != "the synchronizer's key" {
				t.Errorf("after Undo %s holds %q, %v; want the synchronizer's key", p, got, err)
			}
			if n := len(pl.Pending()); n != 0 {
				t.Errorf("%d pending after Undo", n)
			}
			assertOnly(t, root, "key.pem")
		})
		t.Run(access+"/replaced again while put back", func(t *testing.T) {
			root := t.TempDir()
			p := filepath.Join(root, "key.pem")
			pl := New(racingOps{Ops: ops(t, root), beforeRename: replaceWith("old key"), beforeLink: replaceWith("new key")})
			rec, err := pl.Symlink(ctx, "node-1", "../target.pem", p)
			if err != nil {
				t.Fatal(err)
			}
			if err := pl.Undo(ctx, rec); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(p); err != nil || string(got) != "new key" {
				t.Errorf("after Undo %s holds %q, %v; want the newest key", p, got, err)
			}
			// The older version moved aside is not left in the tree under a private name.
			assertOnly(t, root, "key.pem")
		})
		t.Run(access+"/put back fails with nothing at the path", func(t *testing.T) {
			root := t.TempDir()
			p := filepath.Join(root, "key.pem")
			pl := New(racingOps{Ops: ops(t, root), beforeRename: replaceWith("old key"), failLink: true})
			rec, err := pl.Symlink(ctx, "node-1", "../target.pem", p)
			if err != nil {
				t.Fatal(err)
			}
			if err := pl.Undo(ctx, rec); err == nil || !strings.Contains(err.Error(), asidePrefix) {
				t.Errorf("Undo = %v, want an error naming the file moved aside", err)
			}
		})
		t.Run(access+"/still a symlink", func(t *testing.T) {
			root := t.TempDir()
			p := filepath.Join(root, "key.pem")
			pl := New(ops(t, root))
			rec, err := pl.Symlink(ctx, "node-1", "../target.pem", p)
			if err != nil {
				t.Fatal(err)
			}
			if err := pl.Undo(ctx, rec); err != nil {
				t.Fatal(err)
			}
			assertOnly(t, root)
		})
	}
}

// assertOnly fails t unless dir holds exactly names.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}
