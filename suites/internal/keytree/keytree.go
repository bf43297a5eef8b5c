// Package keytree inspects a node's decryption keys tree through a node driver: find the file
// holding given bytes, snapshot the tree, and audit it with internal/crikeys (the rule CRI-O
// applies) plus the synchronizer's hygiene rules (no temp files, key files 0600).
package keytree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// Reader is the part of nodedriver.Driver this package uses.
type Reader interface {
	ListKeys(ctx context.Context, node string) ([]nodedriver.Entry, error)
	ReadKey(ctx context.Context, node, relpath string) ([]byte, error)
}

// Files returns the regular files whose bytes equal want, sorted by path. Files that vanish
// between listing and reading are ignored.
func Files(ctx context.Context, r Reader, node string, want []byte) ([]nodedriver.Entry, error) {
	entries, err := r.ListKeys(ctx, node)
	if err != nil {
		return nil, err
	}
	var found []nodedriver.Entry
	for _, e := range entries {
		if e.Type != nodedriver.TypeFile || e.Size != int64(len(want)) {
			continue
		}
		data, err := r.ReadKey(ctx, node, e.Path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if bytes.Equal(data, want) {
			found = append(found, e)
		}
	}
	return found, nil
}

// Snapshot is a comparable summary of a tree: one "TYPE MODE SIZE PATH" line per entry.
func Snapshot(ctx context.Context, r Reader, node string) ([]string, error) {
	entries, err := r.ListKeys(ctx, node)
	if err != nil {
		return nil, err
	}
	lines := make([]string, 0, len(entries))
	for _, e := range entries {
		lines = append(lines, fmt.Sprintf("%s %04o %d %s", e.Type, e.Mode.Perm(), e.Size, e.Path))
	}
	sort.Strings(lines)
	return lines, nil
}

// IsTempName reports whether a base name looks like a temp or editor file a synchronizer must
// never leave in the tree.
func IsTempName(base string) bool {
	return strings.HasPrefix(base, ".") || strings.HasSuffix(base, "~") ||
		strings.Contains(base, ".tmp-") || strings.HasSuffix(base, ".tmp") || strings.HasSuffix(base, ".swp") || strings.HasSuffix(base, ".part")
}

// Audit lists every problem in the node's tree: what crikeys.Audit reports (symlinks,
// non-regular files, files CRI-O cannot use as private keys), temp-looking names, and key
// files under syncSubdir whose mode is not 0600. The regular files are copied into a private
// temp dir and judged there by crikeys.Audit itself. Problems never carry key material.
func Audit(ctx context.Context, r Reader, node, syncSubdir string) ([]crikeys.Problem, error) {
	entries, err := r.ListKeys(ctx, node)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "keysync-audit-")
	if err != nil {
		return nil, fmt.Errorf("failed to create audit dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	var problems []crikeys.Problem
	for _, e := range entries {
		base := path.Base(e.Path)
		if IsTempName(base) {
			problems = append(problems, crikeys.Problem{Path: e.Path, Reason: "temp file left in the keys tree"})
		}
		switch e.Type {
		case nodedriver.TypeDir:
			continue
		case nodedriver.TypeSymlink:
			problems = append(problems, crikeys.Problem{Path: e.Path, Reason: crikeys.ErrSymlink.Error()})
			continue
		case nodedriver.TypeOther:
			problems = append(problems, crikeys.Problem{Path: e.Path, Reason: "not a regular file"})
			continue
		}
		if syncSubdir != "" && strings.HasPrefix(e.Path, syncSubdir+"/") && e.Mode.Perm() != 0o600 {
			problems = append(problems, crikeys.Problem{Path: e.Path, Reason: fmt.Sprintf("mode %04o, want 0600", e.Mode.Perm())})
		}
		data, err := r.ReadKey(ctx, node, e.Path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		dst := filepath.Join(tmp, filepath.FromSlash(e.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return nil, fmt.Errorf("failed to create audit dir: %w", err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			return nil, fmt.Errorf("failed to copy %s for audit: %w", e.Path, err)
		}
	}
	found, err := crikeys.Audit(tmp)
	if err != nil {
		return nil, fmt.Errorf("failed to audit keys tree: %w", err)
	}
	problems = append(problems, found...)
	sort.Slice(problems, func(i, j int) bool { return problems[i].Path < problems[j].Path })
	return problems, nil
}
