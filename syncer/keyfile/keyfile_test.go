package keyfile_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/keysync-dev/keysync/syncer/keyfile"
)

func open(t *testing.T, o keyfile.Options) *keyfile.Store {
	t.Helper()
	s, err := keyfile.Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func layout(t *testing.T) (keys, staging string) {
	root := t.TempDir()
	return filepath.Join(root, "crio", "keys", "synced"), filepath.Join(root, "crio", ".keysync-staging")
}

func TestNameIsDeterministicSafeAndDistinct(t *testing.T) {
	tests := []struct{ ns, secret, key string }{
		{"image-key-synchronizer", "app", "key.pem"},
		{"image-key-synchronizer", "app", "../../etc/passwd"},
		{"image-key-synchronizer", "app.key", "pem"}, // same readable form as the next one
		{"image-key-synchronizer", "app", "key.pem\x00"},
		{"image-key-synchronizer", "app", ".."},
		{"image-key-synchronizer", "app", "/abs"},
		{"image-key-synchronizer", "app", strings.Repeat("x", 400)},
		{"image-key-synchronizer", "app", "ключ"},
		{"", "", ""},
	}
	seen := map[string]int{}
	for i, tc := range tests {
		n := keyfile.Name(tc.ns, tc.secret, tc.key)
		if n != keyfile.Name(tc.ns, tc.secret, tc.key) {
			t.Errorf("%d: name not deterministic", i)
		}
		if strings.ContainsAny(n, "/\x00") || n == "." || n == ".." || strings.HasPrefix(n, ".") || len(n) > 255 {
			t.Errorf("%d: unsafe name %q", i, n)
		}
		if !keyfile.IsName(n) {
			t.Errorf("%d: IsName(%q) = false", i, n)
		}
		if j, dup := seen[n]; dup {
			t.Errorf("%d and %d collide on %q", j, i, n)
		}
		seen[n] = i
	}
	if got := keyfile.Name("image-key-synchronizer", "app", "key.pem"); got != "keysync-1cee8fcacaea4b99-image-key-synchronizer.app.key.pem" {
		// The name is part of the on-disk contract: changing it rewrites every node's files.
		t.Errorf("Name changed: %q", got)
	}
}

func TestPutWritesAtomically0600In0700AndNeverRewritesUnchanged(t *testing.T) {
	keys, staging := layout(t)
	var staged []string
	s := open(t, keyfile.Options{Dir: keys, StagingDir: staging, AfterStage: func(st, final string) {
		staged = append(staged, st)
		if filepath.Dir(st) != staging {
			t.Errorf("staged in %s, want %s", filepath.Dir(st), staging)
		}
		if _, err := os.Stat(final); err == nil && len(staged) == 1 {
			t.Errorf("final file exists before the rename")
		}
	}})
	name := keyfile.Name("ns", "s", "k")
	rec := keyfile.Record{Namespace: "ns", Secret: "s", DataKey: "k"}
	wrote, err := s.Put(name, rec, []byte("one"))
	if err != nil || !wrote {
		t.Fatalf("Put = %v, %v; want true, nil", wrote, err)
	}
	fi, err := os.Stat(filepath.Join(keys, name))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	for _, d := range []string{keys, staging} {
		if di, _ := os.Stat(d); di.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v, want 0700", d, di.Mode().Perm())
		}
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	wrote, err = s.Put(name, rec, []byte("one"))
	if err != nil || wrote {
		t.Fatalf("unchanged Put = %v, %v; want false, nil", wrote, err)
	}
	if fi2, _ := os.Stat(filepath.Join(keys, name)); fi2.Sys().(*syscall.Stat_t).Ino != ino {
		t.Errorf("unchanged file was replaced")
	}
	if wrote, err = s.Put(name, rec, []byte("two")); err != nil || !wrote {
		t.Fatalf("changed Put = %v, %v", wrote, err)
	}
	if got, _ := os.ReadFile(filepath.Join(keys, name)); string(got) != "two" {
		t.Errorf("content %q, want two", got)
	}
	if len(staged) != 2 {
		t.Errorf("%d files staged, want 2", len(staged))
	}
	// A file whose mode drifted is rewritten.
	if err := os.Chmod(filepath.Join(keys, name), 0o644); err != nil {
		t.Fatal(err)
	}
	if wrote, _ = s.Put(name, rec, []byte("two")); !wrote {
		t.Errorf("file with mode 0644 not repaired")
	}
	entries, _ := os.ReadDir(keys)
	if len(entries) != 1 {
		t.Errorf("keys dir holds %d entries, want only the key", len(entries))
	}
}

func TestOwnershipSurvivesRestartAndProtectsForeignFiles(t *testing.T) {
	keys, staging := layout(t)
	s := open(t, keyfile.Options{Dir: keys, StagingDir: staging})
	mine := keyfile.Name("ns", "s", "k")
	if _, err := s.Put(mine, keyfile.Record{Namespace: "ns", Secret: "s", DataKey: "k"}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	// A person's file, even one that looks like ours.
	foreign := keyfile.Name("ns", "other", "k")
	for _, f := range []string{foreign, "admin.pem"} {
		if err := os.WriteFile(filepath.Join(keys, f), []byte("y"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := keyfile.Open(keyfile.Options{Dir: keys, StagingDir: staging}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open on the same staging dir: %v, want in use", err)
	}
	s.Close()
	s2 := open(t, keyfile.Options{Dir: keys, StagingDir: staging})
	owned := s2.Owned()
	if len(owned) != 1 || owned[mine].Secret != "s" {
		t.Fatalf("after restart Owned = %v, want only %s", owned, mine)
	}
	for _, f := range []string{foreign, "admin.pem"} {
		if removed, err := s2.Remove(f); removed || err != nil {
			t.Errorf("Remove(%s) = %v, %v; foreign files must stay", f, removed, err)
		}
		if _, err := os.Stat(filepath.Join(keys, f)); err != nil {
			t.Errorf("foreign file %s gone: %v", f, err)
		}
	}
	if removed, err := s2.Remove(mine); !removed || err != nil {
		t.Fatalf("Remove(mine) = %v, %v", removed, err)
	}
	if s2.Len() != 0 {
		t.Errorf("record kept after remove")
	}
	// The removal is durable: a torn journal line from a crash is ignored, the rest replays.
	if _, err := s2.Put(keyfile.Name("ns", "t", "k"), keyfile.Record{Namespace: "ns", Secret: "t", DataKey: "k"}, []byte("z")); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	jf, err := os.OpenFile(filepath.Join(staging, keyfile.JournalFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	jf.WriteString(`{"put":"keysync-0000`)
	jf.Close()
	s3 := open(t, keyfile.Options{Dir: keys, StagingDir: staging})
	if got := s3.Owned(); len(got) != 1 || got[keyfile.Name("ns", "t", "k")].Secret != "t" {
		t.Errorf("after reopen Owned = %v, want only t's file", got)
	}
	// Opening folds the journal into the snapshot.
	var st map[string]keyfile.Record
	data, _ := os.ReadFile(filepath.Join(staging, keyfile.StateFile))
	if err := json.Unmarshal(data, &st); err != nil || len(st) != 1 {
		t.Errorf("state file = %s (%v), want t's record", data, err)
	}
}

func TestOpenRejectsBadLayouts(t *testing.T) {
	root := t.TempDir()
	keys := filepath.Join(root, "keys", "synced")
	tests := []struct {
		name    string
		o       keyfile.Options
		wantErr string
	}{
		{"staging inside keys", keyfile.Options{Dir: keys, StagingDir: filepath.Join(keys, "stage")}, "must not contain"},
		{"keys inside staging", keyfile.Options{Dir: keys, StagingDir: filepath.Join(root, "keys")}, "must not contain"},
		{"other filesystem", keyfile.Options{Dir: keys, StagingDir: "/dev/shm/keysync-test-" + filepath.Base(root)}, "cannot rename"},
		{"no dir", keyfile.Options{}, "required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keyfile.Open(tc.o)
			if tc.o.StagingDir != "" && strings.HasPrefix(tc.o.StagingDir, "/dev/shm/") {
				defer os.RemoveAll(tc.o.StagingDir)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Open = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestOpenRemovesStagedLeftoversAndDefaultsStaging(t *testing.T) {
	root := t.TempDir()
	keys := filepath.Join(root, "etc", "crio", "keys", "synced")
	if got, want := keyfile.DefaultStagingDir(keys), filepath.Join(root, "etc", "crio", ".keysync-staging"); got != want {
		t.Fatalf("DefaultStagingDir = %s, want %s (outside /etc/crio/keys)", got, want)
	}
	s := open(t, keyfile.Options{Dir: keys})
	left := filepath.Join(s.StagingDir(), ".stage-123")
	if err := os.WriteFile(left, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	open(t, keyfile.Options{Dir: keys})
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("staged leftover still there: %v", err)
	}
}

func TestOwnerAppliesToDirAndFiles(t *testing.T) {
	keys, staging := layout(t)
	o, err := keyfile.ParseOwner("4242:4343")
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, keyfile.Options{Dir: keys, StagingDir: staging, Owner: o})
	name := keyfile.Name("ns", "s", "k")
	if _, err := s.Put(name, keyfile.Record{Secret: "s"}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{keys, filepath.Join(keys, name)} {
		fi, _ := os.Stat(p)
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 4242 || st.Gid != 4343 {
			t.Errorf("%s owned by %d:%d, want 4242:4343", p, st.Uid, st.Gid)
		}
	}
	if wrote, _ := s.Put(name, keyfile.Record{Secret: "s"}, []byte("x")); wrote {
		t.Errorf("unchanged owned file rewritten")
	}
	for _, bad := range []string{"a:b", "1", "-1:0", "1:2:3"} {
		if _, err := keyfile.ParseOwner(bad); err == nil {
			t.Errorf("ParseOwner(%q) accepted", bad)
		}
	}
}

func TestPutRefusesNamesItDidNotGenerate(t *testing.T) {
	keys, staging := layout(t)
	s := open(t, keyfile.Options{Dir: keys, StagingDir: staging})
	for _, n := range []string{"../escape", "admin.pem", "keysync-zz", ""} {
		if _, err := s.Put(n, keyfile.Record{}, []byte("x")); err == nil {
			t.Errorf("Put(%q) accepted", n)
		}
	}
}
