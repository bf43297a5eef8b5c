// Package crikeys answers one question the way CRI-O answers it: which bytes in a decryption
// keys tree can CRI-O use, and which make its pulls fail.
//
// CRI-O (server/utils.go getDecryptionKeys, v1.34.0) walks decryption_keys_path recursively on
// every pull, refuses any symlink, and hands every file to ocicrypt's utils.SortDecryptionKeys
// without a password. One file ocicrypt cannot classify fails every pull on the node. This
// package reuses that exact code path so that the syncer, the fixtures and the suites judge
// keys by the same rule.
package crikeys

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containers/ocicrypt/config"
	"github.com/containers/ocicrypt/utils"
)

// Kind is what ocicrypt recognises a key file as.
type Kind string

// The kinds CRI-O can use. Only PrivateKey is what a synchronizer writes.
const (
	PrivateKey  Kind = "privkeys"
	Certificate Kind = "x509s"
	GPGKeyRing  Kind = "gpg-privatekeys"
	PKCS11      Kind = "pkcs11-yamls"
)

// Sentinel errors, checked with errors.Is. Messages never contain key material.
var (
	ErrEmpty            = errors.New("key data is empty")
	ErrUnknownType      = errors.New("not a private key CRI-O can parse (ocicrypt: Unknown decryption key type)")
	ErrPasswordRequired = errors.New("private key is encrypted with a password, which CRI-O cannot supply")
	ErrNotPrivateKey    = errors.New("parses, but is neither a private key nor an x509 certificate (a GPG keyring or PKCS#11 reference)")
	ErrSymlink          = errors.New("symbolic links not supported in decryption keys paths")
)

// Classify returns the kind ocicrypt assigns to one file's bytes, read as CRI-O reads them
// (no password). It returns ErrEmpty, ErrPasswordRequired or ErrUnknownType otherwise.
func Classify(data []byte) (Kind, error) {
	if len(data) == 0 {
		// ocicrypt calls empty data a GPG keyring; it is never a usable key.
		return "", ErrEmpty
	}
	sorted, err := utils.SortDecryptionKeys(base64.StdEncoding.EncodeToString(data))
	if err != nil {
		if utils.IsPasswordError(err) {
			return "", ErrPasswordRequired
		}
		return "", ErrUnknownType
	}
	for _, k := range []Kind{PrivateKey, Certificate, GPGKeyRing, PKCS11} {
		if _, ok := sorted[string(k)]; ok {
			return k, nil
		}
	}
	return "", ErrUnknownType
}

// Usable reports whether a file of kind k belongs in a keys tree: a private key, or an x509
// certificate (PKCS#7 layers need the recipient's certificate beside its private key).
// GPG keyrings and PKCS#11 references also parse, but need more than a file to be used; a
// synchronizer does not write them.
func Usable(k Kind) bool { return k == PrivateKey || k == Certificate }

// Normalize returns the bytes a synchronizer should write for data, or an error saying why
// none can be written. It accepts only what ocicrypt classifies as a private key or an x509
// certificate (Usable), after
// converting the one common form CRI-O rejects but can be converted losslessly: a SEC1
// "EC PRIVATE KEY" PEM becomes a PKCS#8 "PRIVATE KEY" PEM.
func Normalize(data []byte) ([]byte, error) {
	if len(data) == 0 {
		return nil, ErrEmpty
	}
	out := data
	if block, rest := pem.Decode(data); block != nil && block.Type == "EC PRIVATE KEY" &&
		len(strings.TrimSpace(string(rest))) == 0 && len(block.Headers) == 0 {
		key, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("failed to parse SEC1 EC private key: %w", ErrUnknownType)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("failed to convert EC key to PKCS#8: %w", err)
		}
		out = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	kind, err := Classify(out)
	if err != nil {
		return nil, err
	}
	if !Usable(kind) {
		return nil, ErrNotPrivateKey
	}
	return out, nil
}

// LoadDir reads a keys tree exactly as CRI-O does before each pull and returns the
// DecryptConfig it would use. A missing directory yields an empty config (plain pulls work,
// encrypted pulls fail); a symlink or an unparseable file anywhere yields an error (every pull
// fails). The error names the offending path.
func LoadDir(dir string) (*config.DecryptConfig, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return &config.DecryptConfig{}, nil
	}
	var items []string
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		if info.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s: %w", path, ErrSymlink)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("failed to read private key file: %w", err)
		}
		if _, err := Classify(data); err != nil && !errors.Is(err, ErrEmpty) {
			return fmt.Errorf("%s: %w", path, err)
		}
		items = append(items, base64.StdEncoding.EncodeToString(data))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sorted, err := utils.SortDecryptionKeys(strings.Join(items, ","))
	if err != nil {
		return nil, fmt.Errorf("failed to sort decryption keys: %w", err)
	}
	return config.InitDecryption(sorted).DecryptConfig, nil
}

// Problem is one entry in a keys tree that would break CRI-O's pulls, or that a synchronizer
// must never leave behind.
type Problem struct {
	Path   string // relative to the tree's root
	Reason string
}

// Audit walks a keys tree and lists every entry that is not a key CRI-O can use (Usable):
// symlinks, files ocicrypt rejects, empty files, and non-regular files. A missing tree has no
// problems. It never returns key material.
func Audit(dir string) ([]Problem, error) {
	var problems []Problem
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == dir {
				return fs.SkipAll
			}
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			problems = append(problems, Problem{rel, ErrSymlink.Error()})
		case d.IsDir():
		case !d.Type().IsRegular():
			problems = append(problems, Problem{rel, "not a regular file"})
		default:
			data, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("failed to read %s: %w", rel, err)
			}
			if kind, err := Classify(data); err != nil {
				problems = append(problems, Problem{rel, err.Error()})
			} else if !Usable(kind) {
				problems = append(problems, Problem{rel, ErrNotPrivateKey.Error()})
			}
		}
		return nil
	})
	return problems, err
}
