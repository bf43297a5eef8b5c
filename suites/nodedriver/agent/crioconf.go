package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/BurntSushi/toml"
)

// DefaultCRIOConfigDir is CRI-O's configuration directory on a node: crio.conf and the
// crio.conf.d drop-ins.
const DefaultCRIOConfigDir = "/etc/crio"

// DefaultDecryptionKeysPath is CRI-O's decryption_keys_path when no configuration sets it.
const DefaultDecryptionKeysPath = "/etc/crio/keys/"

// crioConfig is the part of CRI-O's configuration the agent reads.
type crioConfig struct {
	Crio struct {
		Runtime struct {
			DecryptionKeysPath *string `toml:"decryption_keys_path"`
		} `toml:"runtime"`
	} `toml:"crio"`
}

// CRIOKeysPath is CRI-O's effective decryption_keys_path as configured in dir (crio.conf, then
// every file of crio.conf.d in lexical order, a later setting overriding an earlier one, as
// crio.conf.d(5) says) and the file that set it ("" for CRI-O's default). A file that is not
// TOML is an error: CRI-O would not start with it either. A --decryption-keys-path flag on
// CRI-O's command line is not seen.
func CRIOKeysPath(dir string) (keysPath, source string, err error) {
	files := []string{filepath.Join(dir, "crio.conf")}
	dropins, err := os.ReadDir(filepath.Join(dir, "crio.conf.d"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("failed to list CRI-O drop-ins: %w", err)
	}
	names := make([]string, 0, len(dropins))
	for _, de := range dropins {
		if de.Type().IsRegular() || de.Type()&fs.ModeSymlink != 0 {
			names = append(names, de.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, filepath.Join(dir, "crio.conf.d", n))
	}
	keysPath = DefaultDecryptionKeysPath
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("failed to read CRI-O config %s: %w", f, err)
		}
		var c crioConfig
		if err := toml.Unmarshal(data, &c); err != nil {
			return "", "", fmt.Errorf("failed to parse CRI-O config %s: %w", f, err)
		}
		if p := c.Crio.Runtime.DecryptionKeysPath; p != nil {
			keysPath, source = *p, f
		}
	}
	return keysPath, source, nil
}
