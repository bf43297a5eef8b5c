package plant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxRead bounds what Stat hashes: keys are small, anything bigger is not one of the run's.
const maxRead = 1 << 20

// Host plants on this host (NODE_ACCESS=host: the node lab's one node is this host and its
// keys tree a host directory). The node name is not used.
type Host struct {
	// Stage is a host directory outside the keys tree, on its filesystem.
	Stage string
}

var _ Ops = Host{}

// WriteFile implements Ops: a temp file in Stage, fsynced, renamed to p.
func (h Host) WriteFile(_ context.Context, _, p string, data []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(h.Stage, ".keysync-plant-*")
	if err != nil {
		return fmt.Errorf("failed to create staged file: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("failed to set mode of staged file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("failed to write staged file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("failed to sync staged file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close staged file: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("failed to rename staged file into place: %w", err)
	}
	ok = true
	return nil
}

// Symlink implements Ops: a symlink made in Stage and renamed over p.
func (h Host) Symlink(_ context.Context, _, target, p string) error {
	dir, err := os.MkdirTemp(h.Stage, ".keysync-plant-*")
	if err != nil {
		return fmt.Errorf("failed to create staging directory: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "link")
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("failed to create symlink: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("failed to rename symlink into place: %w", err)
	}
	return nil
}

// Stat implements Ops.
func (h Host) Stat(_ context.Context, _, p string) (Info, error) {
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Info{Kind: KindNone}, nil
	case err != nil:
		return Info{}, fmt.Errorf("failed to stat: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(p)
		if err != nil {
			return Info{}, fmt.Errorf("failed to read symlink: %w", err)
		}
		return Info{Kind: KindSymlink, Target: t}, nil
	case !fi.Mode().IsRegular():
		return Info{Kind: KindOther}, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return Info{}, fmt.Errorf("failed to open: %w", err)
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, io.LimitReader(f, maxRead)); err != nil {
		return Info{}, fmt.Errorf("failed to read: %w", err)
	}
	return Info{Kind: KindFile, SHA256: hex.EncodeToString(sum.Sum(nil))}, nil
}

// Remove implements Ops.
func (h Host) Remove(_ context.Context, _, p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to remove: %w", err)
	}
	return nil
}

// Rename implements Ops.
func (h Host) Rename(_ context.Context, _, from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("failed to rename: %w", err)
	}
	return nil
}

// Link implements Ops.
func (h Host) Link(_ context.Context, _, from, to string) error {
	if err := os.Link(from, to); err != nil {
		return fmt.Errorf("failed to link: %w", err)
	}
	return nil
}

// List implements Ops.
func (h Host) List(_ context.Context, _, dir string) ([]Entry, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list: %w", err)
	}
	entries := make([]Entry, 0, len(des))
	for _, de := range des {
		e := Entry{Name: de.Name(), Kind: KindOther}
		switch t := de.Type(); {
		case t&fs.ModeSymlink != 0:
			e.Kind = KindSymlink
			if e.Target, err = os.Readlink(filepath.Join(dir, de.Name())); err != nil {
				return nil, fmt.Errorf("failed to read symlink: %w", err)
			}
		case t.IsDir():
			e.Kind = KindDir
		case t.IsRegular():
			e.Kind = KindFile
		}
		entries = append(entries, e)
	}
	return entries, nil
}
