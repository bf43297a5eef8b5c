package plant

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestSweep: a killed run's planted files, symlinks and staged files go; a user's files,
// symlinks and another run's files stay.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	for access, ops := range opsUnderTest(t) {
		for _, runID := range []string{"", "a1b2c3"} {
			t.Run(access+"/run "+runID, func(t *testing.T) {
				base := t.TempDir()
				root := filepath.Join(base, "keys")
				sync := filepath.Join(root, "synced")
				if err := os.MkdirAll(sync, 0o700); err != nil {
					t.Fatal(err)
				}
				write := func(p string) {
					if err := os.WriteFile(p, []byte("k"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				link := func(target, p string) {
					if err := os.Symlink(target, p); err != nil {
						t.Fatal(err)
					}
				}
				gone := []string{
					filepath.Join(root, "ks-a1b2c3-foreign.pem"),
					filepath.Join(sync, "ks-a1b2c3-foreign.pem"),
					filepath.Join(sync, "ks-a1b2c3-0f0f-foreign.pem"), // a child run's
					filepath.Join(base, "ks-a1b2c3-symlink-target.pem"),
					filepath.Join(base, ".keysync-plant-0123456789abcdef"),
					filepath.Join(base, ".keysync-plant-12345"),
				}
				for _, p := range gone {
					write(p)
				}
				link("../../ks-a1b2c3-symlink-target.pem", filepath.Join(sync, "key-a.pem"))
				gone = append(gone, filepath.Join(sync, "key-a.pem"))
				other := []string{filepath.Join(sync, "ks-ffeedd-foreign.pem"), filepath.Join(base, "ks-ffeedd-symlink-target.pem")}
				for _, p := range other {
					write(p)
				}
				link("../../ks-ffeedd-symlink-target.pem", filepath.Join(sync, "key-b.pem"))
				other = append(other, filepath.Join(sync, "key-b.pem"))
				stay := []string{
					filepath.Join(sync, "foreign.pem"),
					filepath.Join(sync, "ks-a1b2c3-foreign.pem.bak"),
					filepath.Join(root, "ks-a1b2c3-symlink-target.pem"), // not beside the tree
					filepath.Join(base, ".keysync-plant-notours"),
					filepath.Join(base, "crio.conf"),
				}
				for _, p := range stay {
					write(p)
				}
				link("/etc/somewhere/ks-a1b2c3-symlink-target.pem", filepath.Join(sync, "user-link.pem"))
				link("ks-a1b2c3-symlink-target.pem", filepath.Join(root, "user-link2.pem")) // points inside the tree
				stay = append(stay, filepath.Join(sync, "user-link.pem"), filepath.Join(root, "user-link2.pem"))
				if runID == "" {
					gone = append(gone, other...)
				} else {
					stay = append(stay, other...)
				}

				dry, err := Sweep(ctx, ops(t, base), "node-1", SweepOptions{KeysRoot: root, RunID: runID, DryRun: true})
				if err != nil {
					t.Fatal(err)
				}
				if len(dry) != len(gone) {
					t.Errorf("dry run lists %d:\n%s\nwant %d", len(dry), strings.Join(dry, "\n"), len(gone))
				}
				for _, p := range gone {
					if _, err := os.Lstat(p); err != nil {
						t.Errorf("dry run removed %s", p)
					}
				}
				done, err := Sweep(ctx, ops(t, base), "node-1", SweepOptions{KeysRoot: root, RunID: runID})
				if err != nil {
					t.Fatal(err)
				}
				sort.Strings(done)
				if len(done) != len(gone) {
					t.Errorf("removed %d:\n%s\nwant %d", len(done), strings.Join(done, "\n"), len(gone))
				}
				for _, p := range gone {
					if _, err := os.Lstat(p); err == nil {
						t.Errorf("%s is still there", p)
					}
				}
				for _, p := range stay {
					if _, err := os.Lstat(p); err != nil {
						t.Errorf("%s was removed: %v", p, err)
					}
				}
				if err := noStaged(base); err == nil {
					t.Error(".keysync-plant-notours was removed")
				}
			})
		}
	}
}

// TestSweepHostStagingDir: Host.Symlink's staging directory (a symlink named link in it) goes;
// a directory of the same name holding anything else stays.
func TestSweepHostStagingDir(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "keys")
	ours, theirs := filepath.Join(base, ".keysync-plant-42"), filepath.Join(base, ".keysync-plant-43")
	for _, d := range []string{root, ours, theirs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/x", filepath.Join(ours, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(theirs, "data"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Sweep(context.Background(), Host{Stage: base}, "", SweepOptions{KeysRoot: root}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(ours); err == nil {
		t.Error("the staging directory is still there")
	}
	if _, err := os.Lstat(filepath.Join(theirs, "data")); err != nil {
		t.Errorf("a directory holding something else was swept: %v", err)
	}
}

func TestParseList(t *testing.T) {
	got, err := parseList("file\x00a b\x00\x00symlink\x00l\x00../t\x00dir\x00d\x00\x00")
	if err != nil || len(got) != 3 || got[0] != (Entry{Kind: KindFile, Name: "a b"}) || got[1] != (Entry{Kind: KindSymlink, Name: "l", Target: "../t"}) || got[2].Kind != KindDir {
		t.Errorf("parseList = %+v, %v", got, err)
	}
	for _, bad := range []string{"file\x00a\x00", "weird\x00a\x00\x00"} {
		if _, err := parseList(bad); err == nil {
			t.Errorf("parseList(%q) succeeded", bad)
		}
	}
}
