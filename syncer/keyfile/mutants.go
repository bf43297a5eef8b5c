//go:build keysync_mutants

package keyfile

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// writeInPlace is mutant in-place: the final file is truncated and written in two halves with
// a pause between them (a slow disk), so CRI-O can read a partial key.
func writeInPlace(final string, data []byte) error {
	f, err := os.OpenFile(final, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("failed to open key file: %w", err)
	}
	half := len(data) / 2
	if _, err := f.Write(data[:half]); err != nil {
		f.Close()
		return fmt.Errorf("failed to write key file: %w", err)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := f.Write(data[half:]); err != nil {
		f.Close()
		return fmt.Errorf("failed to write key file: %w", err)
	}
	return f.Close()
}

// leaveCrashedTemp is mutant temp-left-in-tree: a synchronizer that stages inside the keys tree
// and was killed mid-write leaves a partial temp file there (written here once per file).
func leaveCrashedTemp(final string, data []byte) {
	_ = os.WriteFile(filepath.Join(filepath.Dir(final), filepath.Base(final)+".tmp-crashed"), data[:len(data)/2], 0o600)
}

// writeThroughSymlink is mutant follow-symlink: a symlink someone put at the key file's path is
// followed, so the key lands in the link's target (wherever it points, outside the tree too)
// and the symlink stays in the tree (CRI-O fails every pull while it is there).
func writeThroughSymlink(final string, data []byte) error {
	if err := os.WriteFile(final, data, 0o600); err != nil {
		return fmt.Errorf("failed to write key file: %w", err)
	}
	return nil
}

// removeForeign is mutant remove-foreign: like the prior art's reconcile pass, every file in the
// keys directory that no record owns is deleted — keys another tool or a person put there too.
func (s *Store) removeForeign() {
	owned := s.Owned()
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if _, ok := owned[e.Name()]; ok || e.IsDir() {
			continue
		}
		_ = os.Remove(filepath.Join(s.opts.Dir, e.Name()))
	}
}
