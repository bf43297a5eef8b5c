package keyfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/keysync-dev/keysync/syncer/keyfile"
)

// Real faults: a small tmpfs that fills up, two bind mounts of one filesystem. Mounting needs
// root (CAP_SYS_ADMIN), as `make test` and CI have.

// mountTmpfs mounts a tmpfs of size bytes on a new temp dir.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Fatalf("failed to mount a tmpfs (these fault tests need root, as `make test` runs): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func bindMount(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("failed to bind-mount (these fault tests need root, as `make test` runs): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dst, syscall.MNT_DETACH) })
}

// fill writes a filler file until the filesystem is full; the returned func frees the space.
func fill(t *testing.T, dir string) func() {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling: %v", err)
			}
			break
		}
	}
	for _, n := range []int{1024, 256, 64, 16, 1} { // the last partial page too
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	f.Close()
	return func() { _ = os.Remove(p) }
}

// TestRotationThatFailsNeverClaimsTheNewVersion (issue 13, defect 1): a kp-key rotation whose
// write fails on a full disk, or that is interrupted between any two steps, must never leave a
// record claiming the new version while the file holds the old key, neither in this process
// nor after a restart.
func TestRotationThatFailsNeverClaimsTheNewVersion(t *testing.T) {
	name := keyfile.Name("ns", "s", "kp-key")
	recA := keyfile.Record{Namespace: "ns", Secret: "s", DataKey: "kp-key", Source: "version-a"}
	recB := recA
	recB.Source = "version-b"
	keyA, keyB := []byte(strings.Repeat("A", 1800)), []byte(strings.Repeat("B", 1800))
	check := func(t *testing.T, s *keyfile.Store, keys string) {
		t.Helper()
		data, _ := os.ReadFile(filepath.Join(keys, name))
		rec, present := s.Lookup(name)
		if present && rec.Source == recB.Source && string(data) != string(keyB) {
			t.Errorf("record claims %s but the file holds the old key", rec.Source)
		}
		if !present {
			t.Errorf("the old key file is gone")
		}
	}
	t.Run("disk full", func(t *testing.T) {
		root := mountTmpfs(t, "64k")
		keys, staging := filepath.Join(root, "keys", "synced"), filepath.Join(root, ".staging")
		s, err := keyfile.Open(keyfile.Options{Dir: keys, StagingDir: staging})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(name, recA, keyA); err != nil {
			t.Fatal(err)
		}
		free := fill(t, root)
		if _, err := s.Put(name, recB, keyB); err == nil {
			t.Fatal("Put on a full disk succeeded")
		}
		check(t, s, keys)
		s.Close()
		free()
		s, err = keyfile.Open(keyfile.Options{Dir: keys, StagingDir: staging})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		check(t, s, keys)
	})
	for _, step := range []keyfile.Step{keyfile.StepRecorded, keyfile.StepStaged, keyfile.StepRenamed} {
		t.Run("killed after "+string(step), func(t *testing.T) {
			keys, staging := layout(t)
			s := open(t, keyfile.Options{Dir: keys, StagingDir: staging})
			if _, err := s.Put(name, recA, keyA); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s, err := keyfile.Open(keyfile.Options{Dir: keys, StagingDir: staging, OnStep: func(st keyfile.Step, _ string) {
				if st == step {
					runtime.Goexit() // the writer stops here, as a SIGKILL would stop it
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = s.Put(name, recB, keyB) }()
			wg.Wait()
			s.Close()
			s = open(t, keyfile.Options{Dir: keys, StagingDir: staging})
			check(t, s, keys)
		})
	}
}

// TestTornJournalLineHeals (issue 13, defect 3): a short write on a full disk leaves half a
// journal line; the store must neither glue the next change onto it nor refuse to open.
func TestTornJournalLineHeals(t *testing.T) {
	t.Run("written by hand", func(t *testing.T) {
		keys, staging := layout(t)
		s := open(t, keyfile.Options{Dir: keys, StagingDir: staging})
		a, b := keyfile.Name("ns", "s", "a"), keyfile.Name("ns", "s", "b")
		if _, err := s.Put(a, keyfile.Record{Namespace: "ns", Secret: "s", DataKey: "a"}, []byte("a")); err != nil {
			t.Fatal(err)
		}
		s.Close()
		j := filepath.Join(staging, keyfile.JournalFile)
		f, err := os.OpenFile(j, os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		// Half a line, then a complete one (what an append after a short write produced).
		_, _ = f.WriteString(`{"put":"` + a + `","rec":{"names` + "\n")
		_, _ = f.WriteString(`{"put":"` + b + `","rec":{"namespace":"ns","secret":"s","dataKey":"b"}}` + "\n")
		f.Close()
		s2, err := keyfile.Open(keyfile.Options{Dir: keys, StagingDir: staging})
		if err != nil {
			t.Fatalf("Open after a torn journal line: %v", err)
		}
		defer s2.Close()
		if _, ok := s2.Owned()[b]; !ok {
			t.Errorf("the good line after the torn one was lost")
		}
		if _, ok := s2.Owned()[a]; !ok {
			t.Errorf("the record before the torn line was lost")
		}
		if len(s2.Healed()) == 0 {
			t.Errorf("healing not reported")
		}
	})
	t.Run("short write on a full disk", func(t *testing.T) {
		root := mountTmpfs(t, "8m")
		keys, staging := filepath.Join(root, "keys", "synced"), filepath.Join(root, ".staging")
		s, err := keyfile.Open(keyfile.Options{Dir: keys, StagingDir: staging})
		if err != nil {
			t.Fatal(err)
		}
		j := filepath.Join(staging, keyfile.JournalFile)
		// Grow the journal until its next line must cross a page boundary.
		i := 0
		for ; i < 500; i++ {
			fi, err := os.Stat(j)
			if err != nil {
				t.Fatal(err)
			}
			if gap := 4096 - fi.Size()%4096; gap > 8 && gap < 60 && fi.Size() > 0 {
				break
			}
			n := keyfile.Name("ns", "s", strconv.Itoa(i))
			if _, err := s.Put(n, keyfile.Record{Namespace: "ns", Secret: "s", DataKey: "k"}, []byte("k")); err != nil {
				t.Fatal(err)
			}
		}
		free := fill(t, root)
		late := keyfile.Name("ns", "late", "k")
		if _, err := s.Put(late, keyfile.Record{Namespace: "ns", Secret: "late", DataKey: "k"}, []byte("k")); err == nil {
			t.Fatal("Put on a full disk succeeded")
		}
		free()
		after := keyfile.Name("ns", "after", "k")
		if _, err := s.Put(after, keyfile.Record{Namespace: "ns", Secret: "after", DataKey: "k"}, []byte("k")); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s, err = keyfile.Open(keyfile.Options{Dir: keys, StagingDir: staging})
		if err != nil {
			t.Fatalf("Open after a short journal write: %v", err)
		}
		defer s.Close()
		if _, ok := s.Owned()[after]; !ok {
			t.Errorf("the change after the failed append was lost")
		}
		if got := s.Len(); got != i+1 {
			j, _ := os.ReadFile(j)
			t.Errorf("%d records after restart, want %d; healed %v; journal tail %q", got, i+1, s.Healed(), j[max(0, len(j)-400):])
		}
	})
}

// TestOpenProbesARealRename (issue 13, defect 4): two bind mounts of one filesystem share a
// device number but rename(2) between them fails with EXDEV; Open must find out.
func TestOpenProbesARealRename(t *testing.T) {
	root := t.TempDir()
	fs := filepath.Join(root, "fs")
	if err := os.MkdirAll(fs, 0o755); err != nil {
		t.Fatal(err)
	}
	bindMount(t, fs, filepath.Join(root, "a"))
	bindMount(t, fs, filepath.Join(root, "b"))
	keys, staging := filepath.Join(root, "a", "keys", "synced"), filepath.Join(root, "b", "staging")
	s, err := keyfile.Open(keyfile.Options{Dir: keys, StagingDir: staging})
	if err == nil {
		_, perr := s.Put(keyfile.Name("ns", "s", "k"), keyfile.Record{Namespace: "ns", Secret: "s", DataKey: "k"}, []byte("k"))
		s.Close()
		t.Fatalf("Open accepted a staging dir it cannot rename from (Put then failed with: %v)", perr)
	}
	if !strings.Contains(err.Error(), "rename") {
		t.Errorf("error %q does not say the rename fails", err)
	}
	if entries, _ := os.ReadDir(keys); len(entries) != 0 {
		t.Errorf("the probe left %d entries in the keys dir", len(entries))
	}
}
