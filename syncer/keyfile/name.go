// Package keyfile owns the synchronizer's keys tree: deterministic file names, atomic writes
// staged outside the tree, ownership records that survive restarts, and pruning of ONLY the
// files the synchronizer wrote.
//
// Ownership. A file in the keys tree is the synchronizer's when its name is listed in the
// state (state.json snapshot + state.journal) kept in the staging directory, which lies
// outside the keys tree (CRI-O reads every file under decryption_keys_path, so no bookkeeping
// file may live in it). The name
// is recorded BEFORE the file is renamed into the tree and dropped only AFTER the file is
// removed, so a crash at any point leaves at worst a record without a file, never an owned
// file without a record. A file a person put in the tree is never in the state file, so
// neither a delete nor a full resync touches it, even when its name looks like ours. Losing the
// state file makes the synchronizer forget its files: it then never prunes them (conservative).
package keyfile

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Prefix starts every file name the synchronizer generates.
const Prefix = "keysync-"

// maxReadable bounds the human-readable part of a name; with the prefix and the hash the
// whole name stays far below NAME_MAX (255 bytes).
const maxReadable = 160

// Name returns the file name for one key: "keysync-<hash>-<namespace>.<secret>.<dataKey>".
// The hash (SHA-256 of the exact triple, 16 hex digits) makes names collision-safe; the
// readable part keeps only [A-Za-z0-9._-] (anything else becomes '_') and never starts a path
// component, so a name can neither traverse nor hide. The same input always gives the same
// name, across restarts and nodes.
func Name(namespace, secret, dataKey string) string {
	h := sha256.Sum256([]byte(namespace + "\x00" + secret + "\x00" + dataKey))
	readable := sanitize(namespace + "." + secret + "." + dataKey)
	if len(readable) > maxReadable {
		readable = readable[:maxReadable]
	}
	return Prefix + hex.EncodeToString(h[:8]) + "-" + readable
}

func sanitize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == '.':
			b.WriteByte('.')
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// IsName reports whether name has the shape Name produces (it says nothing about ownership).
func IsName(name string) bool {
	if !strings.HasPrefix(name, Prefix) || len(name) < len(Prefix)+17 || name[len(Prefix)+16] != '-' {
		return false
	}
	if _, err := hex.DecodeString(name[len(Prefix) : len(Prefix)+16]); err != nil {
		return false
	}
	return sanitize(name) == name && !strings.Contains(name, "/")
}
