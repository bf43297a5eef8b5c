package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/keysync-dev/keysync/fixtures/manifest"
	"github.com/keysync-dev/keysync/internal/crikeys"
)

// Image is one encrypted fixture and the one private key that decrypts it.
type Image struct {
	Name    string
	Ref     string
	Marker  string // what the image's program prints ("" if unknown)
	KeyFile string // path of the private key, for messages
	Key     []byte // PEM bytes of the private key
}

// Fixtures are what the features need from the fixtures manifest: two encrypted images for
// two different keys (A and B) and a plain image.
type Fixtures struct {
	A, B  Image
	Plain string
}

// SelectFixtures picks the images the features use from a manifest's variants: A is the first
// encrypted variant with exactly one key file that CRI-O accepts, B the first such variant for
// another key, and the plain image is A's plain twin or else the first unencrypted variant.
// readFile reads key files (os.ReadFile).
func SelectFixtures(vs []manifest.Variant, readFile func(string) ([]byte, error)) (Fixtures, error) {
	var f Fixtures
	var haveA, haveB bool
	var normA []byte
	var errs []error
	for _, v := range vs {
		if !v.Encrypted {
			if v.Reference != "" && f.Plain == "" {
				f.Plain = v.Reference
			}
			continue
		}
		if haveB || len(v.KeyFiles) != 1 || v.Reference == "" {
			continue
		}
		key, err := readFile(v.KeyFiles[0])
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to read key of fixture %s: %w", v.Name, err))
			continue
		}
		norm, err := crikeys.Normalize(key)
		if err != nil {
			continue // a certificate or a key CRI-O rejects: not a single-key fixture
		}
		img := Image{Name: v.Name, Ref: v.Reference, Marker: v.Marker, KeyFile: v.KeyFiles[0], Key: key}
		switch {
		case !haveA:
			f.A, haveA, normA = img, true, norm
			if v.PlainTwin != "" {
				f.Plain = v.PlainTwin
			}
		case !bytes.Equal(norm, normA):
			f.B, haveB = img, true
		}
	}
	if !haveA || !haveB {
		errs = append(errs, errors.New("need two encrypted variants, each decrypted by one private key CRI-O accepts, for different keys"))
	}
	if f.Plain == "" {
		errs = append(errs, errors.New("need an unencrypted variant (or a plain twin)"))
	}
	if !haveA || !haveB || f.Plain == "" {
		return Fixtures{}, fmt.Errorf("fixtures manifest is not usable: %w", errors.Join(errs...))
	}
	return f, nil
}

// LoadFixtures reads the manifest at path (package fixtures/manifest) and selects the fixtures.
func LoadFixtures(path string) (Fixtures, error) {
	m, err := manifest.Load(path)
	if err != nil {
		return Fixtures{}, err
	}
	return SelectFixtures(m.Variants, os.ReadFile)
}
