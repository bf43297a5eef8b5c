package keyfile_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/keysync-dev/keysync/syncer/keyfile"
)

// childEnv makes the test binary act as an unprivileged synchronizer: Open the store in
// "keys|staging|crio" and Put one key, then try to write CRI-O's config.
const childEnv = "KEYFILE_TEST_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(runChild(v))
	}
	os.Exit(m.Run())
}

func runChild(v string) int {
	var keys, staging, crioConf string
	if _, err := fmt.Sscanf(v, "%s %s %s", &keys, &staging, &crioConf); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := keyfile.Open(keyfile.Options{Dir: keys, StagingDir: staging})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 3
	}
	defer s.Close()
	if _, err := s.Put(keyfile.Name("ns", "s", "new"), keyfile.Record{Namespace: "ns", Secret: "s", DataKey: "new"}, []byte("new")); err != nil {
		fmt.Fprintln(os.Stderr, "put:", err)
		return 4
	}
	if _, err := s.Put(keyfile.Name("ns", "s", "old"), keyfile.Record{Namespace: "ns", Secret: "s", DataKey: "old"}, []byte("replaced")); err != nil {
		fmt.Fprintln(os.Stderr, "replace:", err)
		return 5
	}
	if err := os.WriteFile(crioConf, []byte("owned"), 0o644); !errors.Is(err, os.ErrPermission) {
		fmt.Fprintln(os.Stderr, "CRI-O's config is writable:", err)
		return 6
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(crioConf), "new.conf"), nil, 0o644); !errors.Is(err, os.ErrPermission) {
		fmt.Fprintln(os.Stderr, "CRI-O's directory is writable:", err)
		return 7
	}
	return 0
}

// TestPrepareHandsOverToAnUnprivilegedSyncer (issue 13, defect 7): the init container's
// Prepare hands the keys and staging directories of a former root synchronizer to uid 65532;
// a synchronizer running as that user then keeps, replaces and adds key files, and cannot
// touch CRI-O's own configuration next to them. A person's file keeps its owner.
func TestPrepareHandsOverToAnUnprivilegedSyncer(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test hands files to another user: it needs root, as `make test` runs")
	}
	const uid, gid = 65532, 65532
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil { // t.TempDir is 0700
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	crio := filepath.Join(root, "crio")
	keys, staging := filepath.Join(crio, "keys", "synced"), filepath.Join(crio, ".keysync-staging")
	if err := os.MkdirAll(filepath.Join(crio, "keys"), 0o700); err != nil { // as CRI-O might leave it
		t.Fatal(err)
	}
	crioConf := filepath.Join(crio, "crio.conf")
	if err := os.WriteFile(crioConf, []byte("[crio]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A former synchronizer, as root: a key file, its state and lock.
	s := open(t, keyfile.Options{Dir: keys, StagingDir: staging})
	if _, err := s.Put(keyfile.Name("ns", "s", "old"), keyfile.Record{Namespace: "ns", Secret: "s", DataKey: "old"}, []byte("old")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	person := filepath.Join(keys, "admin.pem")
	if err := os.WriteFile(person, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	notes, err := keyfile.Prepare(keys, staging, keyfile.Owner{UID: uid, GID: gid})
	if err != nil {
		t.Fatalf("Prepare: %v (notes %v)", err, notes)
	}
	owner := func(p string) (int, os.FileMode) {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return int(fi.Sys().(*syscall.Stat_t).Uid), fi.Mode().Perm()
	}
	for _, p := range []string{keys, staging, filepath.Join(keys, keyfile.Name("ns", "s", "old")),
		filepath.Join(staging, keyfile.StateFile), filepath.Join(staging, keyfile.JournalFile), filepath.Join(staging, keyfile.LockFile)} {
		if u, _ := owner(p); u != uid {
			t.Errorf("%s owned by %d, want %d", p, u, uid)
		}
	}
	if u, _ := owner(person); u != 0 {
		t.Errorf("a person's file was handed over")
	}
	if u, mode := owner(filepath.Join(crio, "keys")); u != 0 || mode != 0o701 {
		t.Errorf("keys parent: owner %d mode %v, want root and 0701 (search only)", u, mode)
	}
	// Idempotent: a second run changes nothing.
	if notes, err := keyfile.Prepare(keys, staging, keyfile.Owner{UID: uid, GID: gid}); err != nil || len(notes) != 0 {
		t.Errorf("second Prepare: %v, notes %v", err, notes)
	}

	// The go build dir is 0700: give the unprivileged user its own copy of this test binary.
	bin := filepath.Join(root, "keyfile.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+keys+" "+staging+" "+crioConf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the unprivileged synchronizer failed: %v\n%s", err, out)
	}
	for name, want := range map[string]string{keyfile.Name("ns", "s", "new"): "new", keyfile.Name("ns", "s", "old"): "replaced"} {
		if data, err := os.ReadFile(filepath.Join(keys, name)); err != nil || string(data) != want {
			t.Errorf("%s: %q %v, want %q", name, data, err, want)
		}
		if u, mode := owner(filepath.Join(keys, name)); u != uid || mode != 0o600 {
			t.Errorf("%s: owner %d mode %v, want %d and 0600", name, u, mode, uid)
		}
	}
}
