package keyfile_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/keysync-dev/keysync/syncer/keyfile"
)

// plantCase is something another tool or a person puts into the keys tree after the store
// wrote its first key, the store's next operation, and the check of what the reference
// promises about it (nil: the promise held). mutants_test.go runs the same cases against the
// mutants that break them.
type plantCase struct {
	name  string
	plant func(t *testing.T, keys, outside, final string)
	act   func(s *keyfile.Store, name string) error
	check func(keys, outside, final string) error
}

const (
	targetBytes  = "someone else's file outside the tree"
	foreignBytes = "someone else's key"
)

var plantCases = []plantCase{
	{
		name: "a symlink at a key file's path is replaced, its target outside the tree untouched",
		plant: func(t *testing.T, _, outside, final string) {
			target := filepath.Join(outside, "target")
			writeFile(t, target, targetBytes)
			if err := os.Remove(final); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, final); err != nil {
				t.Fatal(err)
			}
		},
		act: func(s *keyfile.Store, name string) error {
			_, err := s.Put(name, keyfile.Record{Namespace: "ns", Secret: "s", DataKey: "k"}, []byte("v2"))
			return err
		},
		check: func(_, outside, final string) error {
			fi, err := os.Lstat(final)
			if err != nil || fi.Mode()&fs.ModeSymlink != 0 {
				return fmt.Errorf("key file path after the write: %v, %v; want the regular file replacing the symlink", fi.Mode(), err)
			}
			return errors.Join(wantContent(final, "v2"), wantContent(filepath.Join(outside, "target"), targetBytes))
		},
	},
	{
		name:  "a file beside the keys survives a write",
		plant: func(t *testing.T, keys, _, _ string) { writeFile(t, filepath.Join(keys, "admin.pem"), foreignBytes) },
		act: func(s *keyfile.Store, _ string) error {
			_, err := s.Put(keyfile.Name("ns", "t", "k"), keyfile.Record{Namespace: "ns", Secret: "t", DataKey: "k"}, []byte("t"))
			return err
		},
		check: func(keys, _, _ string) error { return wantContent(filepath.Join(keys, "admin.pem"), foreignBytes) },
	},
	{
		name:  "a file beside the keys survives a removal",
		plant: func(t *testing.T, keys, _, _ string) { writeFile(t, filepath.Join(keys, "admin.pem"), foreignBytes) },
		act: func(s *keyfile.Store, name string) error {
			_, err := s.Remove(name)
			return err
		},
		check: func(keys, _, _ string) error { return wantContent(filepath.Join(keys, "admin.pem"), foreignBytes) },
	},
}

// runPlantCase writes a first key, plants, acts and returns the check's verdict.
func runPlantCase(t *testing.T, pc plantCase) error {
	t.Helper()
	keys, staging := layout(t)
	outside := t.TempDir()
	s := open(t, keyfile.Options{Dir: keys, StagingDir: staging})
	name := keyfile.Name("ns", "s", "k")
	if _, err := s.Put(name, keyfile.Record{Namespace: "ns", Secret: "s", DataKey: "k"}, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(keys, name)
	pc.plant(t, keys, outside, final)
	if err := pc.act(s, name); err != nil {
		t.Fatalf("store operation after the planting: %v", err)
	}
	return pc.check(keys, outside, final)
}

// TestPlantedFilesAndSymlinks: the store never follows a symlink in the tree (it replaces it)
// and never touches a file it did not write.
func TestPlantedFilesAndSymlinks(t *testing.T) {
	for _, pc := range plantCases {
		t.Run(pc.name, func(t *testing.T) {
			if err := runPlantCase(t, pc); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func wantContent(p, want string) error {
	got, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", filepath.Base(p), err)
	}
	if string(got) != want {
		return fmt.Errorf("%s holds %d bytes other than expected", filepath.Base(p), len(got))
	}
	return nil
}
