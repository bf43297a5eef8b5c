package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
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

// manifestVariant is one entry of the fixtures manifest (contract 3). Unknown fields are
// ignored so that newer manifests stay readable.
type manifestVariant struct {
	Name       string   `json:"name"`
	Reference  string   `json:"reference"`
	Digest     string   `json:"digest"`
	Encrypted  bool     `json:"encrypted"`
	Recipients []string `json:"recipients"`
	KeyFiles   []string `json:"keyFiles"`
	Marker     string   `json:"marker"`
	Plain      string   `json:"plain"`
	PlainRef   string   `json:"plainReference"`
}

// ParseManifest decodes a fixtures manifest: either {"variants": [...]} or a bare array.
func ParseManifest(data []byte) ([]manifestVariant, error) {
	data = bytes.TrimSpace(data)
	var vs []manifestVariant
	if len(data) > 0 && data[0] == '[' {
		if err := json.Unmarshal(data, &vs); err != nil {
			return nil, fmt.Errorf("failed to decode fixtures manifest: %w", err)
		}
		return vs, nil
	}
	var doc struct {
		Variants []manifestVariant `json:"variants"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("failed to decode fixtures manifest: %w", err)
	}
	return doc.Variants, nil
}

// SelectFixtures picks the images the features use from a manifest's variants: A is the first
// encrypted variant with exactly one key file, B the first such variant for another key file,
// and the plain image is A's plain twin or else the first unencrypted variant. readFile reads
// key files (os.ReadFile).
func SelectFixtures(vs []manifestVariant, readFile func(string) ([]byte, error)) (Fixtures, error) {
	var f Fixtures
	var haveA, haveB bool
	plainTwin := ""
	for _, v := range vs {
		switch {
		case v.Encrypted && len(v.KeyFiles) == 1 && v.Reference != "":
			img := Image{Name: v.Name, Ref: v.Reference, Marker: v.Marker, KeyFile: v.KeyFiles[0]}
			switch {
			case !haveA:
				f.A, haveA = img, true
				plainTwin = v.PlainRef
				if plainTwin == "" {
					plainTwin = v.Plain
				}
			case !haveB && img.KeyFile != f.A.KeyFile:
				f.B, haveB = img, true
			}
		case !v.Encrypted && v.Reference != "" && f.Plain == "":
			f.Plain = v.Reference
		}
	}
	if plainTwin != "" {
		f.Plain = plainTwin
	}
	var errs []error
	if !haveA || !haveB {
		errs = append(errs, errors.New("need two encrypted variants with one key file each, for different keys"))
	}
	if f.Plain == "" {
		errs = append(errs, errors.New("need an unencrypted variant (or a plain twin)"))
	}
	if err := errors.Join(errs...); err != nil {
		return Fixtures{}, fmt.Errorf("fixtures manifest is not usable: %w", err)
	}
	for _, img := range []*Image{&f.A, &f.B} {
		key, err := readFile(img.KeyFile)
		if err != nil {
			return Fixtures{}, fmt.Errorf("failed to read key of fixture %s: %w", img.Name, err)
		}
		img.Key = key
	}
	return f, nil
}

// LoadFixtures reads the manifest at path and selects the fixtures.
func LoadFixtures(path string) (Fixtures, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Fixtures{}, fmt.Errorf("failed to read fixtures manifest: %w", err)
	}
	vs, err := ParseManifest(data)
	if err != nil {
		return Fixtures{}, err
	}
	return SelectFixtures(vs, os.ReadFile)
}
