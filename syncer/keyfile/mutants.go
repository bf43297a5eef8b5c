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
