package keyfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Prepare readies the keys and staging directories for a synchronizer that runs as owner
// (not root): it is the job of the DaemonSet's init container, which runs as root with only
// CAP_CHOWN, so that the long-running synchronizer holds no privilege at all and can write
// nothing but these two directories.
//
//   - Both directories are created 0700 (missing parents 0755) and owned by owner.
//   - Their parents get the search bit for others (o+x, never read): a non-root synchronizer
//     must reach /etc/crio/keys/synced through /etc/crio/keys.
//   - Files of an earlier synchronizer that ran as root are handed over: key files with a
//     generated name (keyfile.IsName) in the keys directory, and everything in the staging
//     directory. A person's files in the keys directory are left alone.
//
// A directory already owned by owner is left as it is (its files were handed over when it
// was). Prepare returns notes of what it changed.
func Prepare(dir, staging string, owner Owner) ([]string, error) {
	var notes []string
	for _, d := range []string{dir, staging} {
		if d == "" || !filepath.IsAbs(d) {
			return notes, fmt.Errorf("directory %q must be an absolute path", d)
		}
	}
	if within(staging, dir) || within(dir, staging) {
		return notes, fmt.Errorf("staging directory %s and keys directory %s must not contain each other", staging, dir)
	}
	for _, d := range []string{dir, staging} {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return notes, fmt.Errorf("failed to create %s: %w", filepath.Dir(d), err)
		}
		if err := os.Mkdir(d, 0o700); err == nil {
			notes = append(notes, "created "+d)
		} else if !errors.Is(err, fs.ErrExist) {
			return notes, fmt.Errorf("failed to create %s: %w", d, err)
		}
		parent := filepath.Dir(d)
		fi, err := os.Stat(parent)
		if err != nil {
			return notes, fmt.Errorf("failed to stat %s: %w", parent, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(parent, fi.Mode().Perm()|0o001); err != nil {
				return notes, fmt.Errorf("failed to let the synchronizer through %s (o+x): %w", parent, err)
			}
			notes = append(notes, "added o+x to "+parent)
		}
	}
	handOver := []struct {
		dir  string
		keep func(name string) bool
	}{
		{dir, IsName},
		{staging, func(string) bool { return true }},
	}
	for _, h := range handOver {
		fi, err := os.Lstat(h.dir)
		if err != nil {
			return notes, fmt.Errorf("failed to stat %s: %w", h.dir, err)
		}
		if !fi.IsDir() {
			return notes, fmt.Errorf("%s is not a directory", h.dir)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) == owner.UID && int(st.Gid) == owner.GID {
			continue
		}
		entries, err := os.ReadDir(h.dir)
		if err != nil {
			return notes, fmt.Errorf("failed to list %s: %w", h.dir, err)
		}
		n := 0
		for _, e := range entries {
			if !h.keep(e.Name()) {
				continue
			}
			if err := os.Lchown(filepath.Join(h.dir, e.Name()), owner.UID, owner.GID); err != nil {
				return notes, fmt.Errorf("failed to hand over %s: %w", filepath.Join(h.dir, e.Name()), err)
			}
			n++
		}
		if err := os.Chmod(h.dir, 0o700); err != nil {
			return notes, fmt.Errorf("failed to set mode of %s: %w", h.dir, err)
		}
		// The directory last: its owner says the hand-over is complete.
		if err := os.Lchown(h.dir, owner.UID, owner.GID); err != nil {
			return notes, fmt.Errorf("failed to hand over %s: %w", h.dir, err)
		}
		notes = append(notes, fmt.Sprintf("handed %s and %d entries in it to %d:%d", h.dir, n, owner.UID, owner.GID))
	}
	return notes, nil
}
