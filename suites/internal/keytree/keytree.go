// Package keytree inspects a node's decryption keys tree through a node driver: find the file
// holding given bytes, snapshot the tree, and audit it with CRI-O's verdicts (the node agent's
// audit, internal/crikeys' rule) plus the synchronizer's hygiene rules (no temp files, key
// files 0600).
package keytree

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// Reader is the part of nodedriver.Driver this package uses; a Reader that is also a
// nodedriver.Auditor audits (and finds files) without reading key bytes.
type Reader = nodedriver.KeyReader

// Files returns the regular files whose bytes equal want, sorted by path, by their SHA-256 in
// the node's audit (nodedriver.AuditKeys: judged on the node where the driver can, so no key
// bytes travel). Files that vanish meanwhile are ignored.
func Files(ctx context.Context, r Reader, node string, want []byte) ([]nodedriver.Entry, error) {
	entries, err := nodedriver.AuditKeys(ctx, r, node)
	if err != nil {
		return nil, err
	}
	sum := nodedriver.SHA256Hex(want)
	var found []nodedriver.Entry
	for _, e := range entries {
		if e.Type == nodedriver.TypeFile && e.Size == int64(len(want)) && e.SHA256 == sum {
			found = append(found, e.Entry)
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Path < found[j].Path })
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

// Audit lists every problem in the node's tree: every entry CRI-O would not accept (the
// verdicts of nodedriver.AuditKeys, judged on the node where the driver can: symlinks,
// non-regular files, files ocicrypt rejects or that are not private keys), temp-looking names,
// and key files under syncSubdir whose mode is not 0600. Problems never carry key material.
func Audit(ctx context.Context, r Reader, node, syncSubdir string) ([]crikeys.Problem, error) {
	entries, err := nodedriver.AuditKeys(ctx, r, node)
	if err != nil {
		return nil, err
	}
	var problems []crikeys.Problem
	for _, e := range entries {
		if IsTempName(path.Base(e.Path)) {
			problems = append(problems, crikeys.Problem{Path: e.Path, Reason: "temp file left in the keys tree"})
		}
		if e.Type == nodedriver.TypeFile && syncSubdir != "" && strings.HasPrefix(e.Path, syncSubdir+"/") && e.Mode.Perm() != 0o600 {
			problems = append(problems, crikeys.Problem{Path: e.Path, Reason: fmt.Sprintf("mode %04o, want 0600", e.Mode.Perm())})
		}
		if err := e.Verdict.Err(); err != nil {
			problems = append(problems, crikeys.Problem{Path: e.Path, Reason: err.Error()})
		}
	}
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].Path < problems[j].Path })
	return problems, nil
}
