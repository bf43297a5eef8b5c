package nodedriver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/keysync-dev/keysync/internal/crikeys"
)

// Verdict is how CRI-O would judge one entry of a keys tree (package internal/crikeys: the
// walk of getDecryptionKeys and ocicrypt's SortDecryptionKeys). The closed set of words below
// is what an audit answer prints.
type Verdict string

// The verdicts. Only VerdictOK lets CRI-O's pulls work; every other one names why not.
const (
	// VerdictOK: a private key CRI-O uses, or a directory it walks into.
	VerdictOK Verdict = "ok"
	// VerdictSymlink: CRI-O refuses every symlink in the tree (crikeys.ErrSymlink).
	VerdictSymlink Verdict = "symlink"
	// VerdictNotRegular: a FIFO, socket or device.
	VerdictNotRegular Verdict = "not-regular"
	// VerdictEmpty: an empty file (crikeys.ErrEmpty).
	VerdictEmpty Verdict = "empty"
	// VerdictUnknownType: ocicrypt cannot classify the bytes (crikeys.ErrUnknownType).
	VerdictUnknownType Verdict = "unknown-type"
	// VerdictPasswordRequired: a password-protected key (crikeys.ErrPasswordRequired).
	VerdictPasswordRequired Verdict = "password-required"
	// VerdictNotPrivateKey: a GPG keyring or PKCS#11 reference (crikeys.ErrNotPrivateKey); a
	// private key or an x509 certificate (crikeys.Usable) is ok.
	VerdictNotPrivateKey Verdict = "not-private-key"
)

// errNotRegular is the reason of VerdictNotRegular (crikeys.Audit's words).
var errNotRegular = errors.New("not a regular file")

// verdictErrs maps each verdict to its reason; VerdictOK has none.
var verdictErrs = map[Verdict]error{
	VerdictOK:               nil,
	VerdictSymlink:          crikeys.ErrSymlink,
	VerdictNotRegular:       errNotRegular,
	VerdictEmpty:            crikeys.ErrEmpty,
	VerdictUnknownType:      crikeys.ErrUnknownType,
	VerdictPasswordRequired: crikeys.ErrPasswordRequired,
	VerdictNotPrivateKey:    crikeys.ErrNotPrivateKey,
}

// ParseVerdict validates s against the closed set.
func ParseVerdict(s string) (Verdict, error) {
	if _, ok := verdictErrs[Verdict(s)]; ok {
		return Verdict(s), nil
	}
	return "", fmt.Errorf("unknown verdict %q", s)
}

// Err is the reason behind a verdict, with internal/crikeys' message (nil for VerdictOK).
func (v Verdict) Err() error { return verdictErrs[v] }

// AuditEntry is one entry of a keys tree with CRI-O's verdict on it. It never holds key bytes.
type AuditEntry struct {
	Entry
	// SHA256 is the lowercase hex SHA-256 of a file's bytes ("" for non-files): enough to find
	// the file holding given bytes without reading them back.
	SHA256  string
	Verdict Verdict
}

// Judge is the verdict on one entry; data is a file's bytes (ignored for other types).
func Judge(e Entry, data []byte) AuditEntry {
	a := AuditEntry{Entry: e}
	switch e.Type {
	case TypeDir:
		a.Verdict = VerdictOK
		return a
	case TypeSymlink:
		a.Verdict = VerdictSymlink
		return a
	case TypeOther:
		a.Verdict = VerdictNotRegular
		return a
	}
	a.SHA256 = SHA256Hex(data)
	a.Size = int64(len(data))
	kind, err := crikeys.Classify(data)
	switch {
	case errors.Is(err, crikeys.ErrEmpty):
		a.Verdict = VerdictEmpty
	case errors.Is(err, crikeys.ErrPasswordRequired):
		a.Verdict = VerdictPasswordRequired
	case err != nil:
		a.Verdict = VerdictUnknownType
	case !crikeys.Usable(kind):
		a.Verdict = VerdictNotPrivateKey
	default:
		a.Verdict = VerdictOK
	}
	return a
}

// SHA256Hex is the lowercase hex SHA-256 of data, as AuditEntry.SHA256 holds it.
func SHA256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Auditor is implemented by drivers that audit a keys tree where it is (on the node), so that
// no key bytes travel. An Auditor may answer ErrUnsupported; AuditKeys then judges the bytes
// itself.
type Auditor interface {
	AuditKeys(ctx context.Context, node string) ([]AuditEntry, error)
}

// KeyReader is the keys-tree half of Driver.
type KeyReader interface {
	ListKeys(ctx context.Context, node string) ([]Entry, error)
	ReadKey(ctx context.Context, node, relpath string) ([]byte, error)
}

// AuditKeys is every entry of node's keys tree with CRI-O's verdict: through r's Auditor when
// it has one that answers, else by listing the tree and judging each file's bytes here (files
// that vanish between listing and reading are left out).
func AuditKeys(ctx context.Context, r KeyReader, node string) ([]AuditEntry, error) {
	if a, ok := r.(Auditor); ok {
		entries, err := a.AuditKeys(ctx, node)
		if !errors.Is(err, ErrUnsupported) {
			return entries, err
		}
	}
	listed, err := r.ListKeys(ctx, node)
	if err != nil {
		return nil, err
	}
	entries := make([]AuditEntry, 0, len(listed))
	for _, e := range listed {
		var data []byte
		if e.Type == TypeFile {
			data, err = r.ReadKey(ctx, node, e.Path)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
		}
		entries = append(entries, Judge(e, data))
	}
	return entries, nil
}

// FormatAudit writes entries in the audit format, one line per entry:
//
//	TYPE MODE SIZE SHA256 VERDICT PATH
//
// TYPE, MODE, SIZE and PATH as in the listing (FormatListing); SHA256 is 64 lowercase hex
// digits for a file and "-" otherwise; VERDICT is one of the Verdict words.
func FormatAudit(w io.Writer, entries []AuditEntry) error {
	for _, e := range entries {
		sum := e.SHA256
		if sum == "" {
			sum = "-"
		}
		if _, err := fmt.Fprintf(w, "%s %04o %d %s %s %s\n", e.Type, e.Mode.Perm(), e.Size, sum, e.Verdict, e.Path); err != nil {
			return fmt.Errorf("failed to write audit: %w", err)
		}
	}
	return nil
}

// fileVerdicts are the verdicts a regular file can get.
var fileVerdicts = map[Verdict]bool{VerdictOK: true, VerdictEmpty: true, VerdictUnknownType: true,
	VerdictPasswordRequired: true, VerdictNotPrivateKey: true}

// ParseAudit parses an audit answer (FormatAudit's lines; blank lines are ignored). It is
// strict: every field must be well-formed and agree with the others (a file has a digest and
// a file verdict, a directory is ok, a symlink is symlink, other is not-regular, non-files
// have size 0 and no digest, only an empty file is empty). Errors name the line number.
func ParseAudit(data []byte) ([]AuditEntry, error) {
	return parseLines(data, "audit", parseAuditLine)
}

func parseAuditLine(line string) (AuditEntry, error) {
	var a AuditEntry
	f := strings.SplitN(line, " ", 6)
	if len(f) != 6 {
		return a, fmt.Errorf("want \"TYPE MODE SIZE SHA256 VERDICT PATH\", got %d fields", len(f))
	}
	t, mode, size, err := parseEntryHead(f[0], f[1], f[2])
	if err != nil {
		return a, err
	}
	v, err := ParseVerdict(f[4])
	if err != nil {
		return a, err
	}
	p, err := CleanRelPath(f[5])
	if err != nil {
		return a, err
	}
	a = AuditEntry{Entry: Entry{Path: p, Mode: mode, Size: size, Type: t}, Verdict: v}
	if t != TypeFile {
		want := map[EntryType]Verdict{TypeDir: VerdictOK, TypeSymlink: VerdictSymlink, TypeOther: VerdictNotRegular}[t]
		switch {
		case f[3] != "-":
			return a, fmt.Errorf("a %s has no digest, got %q", t, f[3])
		case size != 0:
			return a, fmt.Errorf("a %s has size 0, got %d", t, size)
		case v != want:
			return a, fmt.Errorf("a %s is %s, got %s", t, want, v)
		}
		return a, nil
	}
	if len(f[3]) != sha256.Size*2 || strings.ToLower(f[3]) != f[3] {
		return a, fmt.Errorf("digest %q is not 64 lowercase hex digits", f[3])
	}
	if _, err := hex.DecodeString(f[3]); err != nil {
		return a, fmt.Errorf("digest %q is not 64 lowercase hex digits", f[3])
	}
	a.SHA256 = f[3]
	switch {
	case !fileVerdicts[v]:
		return a, fmt.Errorf("a file cannot be %s", v)
	case (v == VerdictEmpty) != (size == 0):
		return a, fmt.Errorf("verdict %s does not fit size %d", v, size)
	}
	return a, nil
}
