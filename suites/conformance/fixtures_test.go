package conformance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/fixtures/manifest"
)

func ecPEM(t *testing.T, sec1 bool) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if sec1 {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestSelectFixtures(t *testing.T) {
	t.Parallel()
	keyA, keyB := ecPEM(t, false), ecPEM(t, true)
	pub, err := publicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"/k/a.pem": keyA, "/k/a-copy.pem": keyA, "/k/b.pem": keyB, "/k/pub.pem": pub}
	read := func(p string) ([]byte, error) {
		if b, ok := files[p]; ok {
			return b, nil
		}
		return nil, errors.New("no such file")
	}
	enc := func(name, ref string, keys ...string) manifest.Variant {
		return manifest.Variant{Name: name, Reference: ref, Encrypted: true, KeyFiles: keys}
	}
	withMarker := func(v manifest.Variant, marker, twin string) manifest.Variant {
		v.Marker, v.PlainTwin = marker, twin
		return v
	}
	vs := []manifest.Variant{
		enc("multi", "r/multi:1", "/k/a.pem", "/k/b.pem"),
		enc("cert-only", "r/cert:1", "/k/pub.pem"),
		withMarker(enc("jwe-a", "r/a:1", "/k/a.pem"), "hello a", "r/a-plain:1"),
		enc("jwe-a2", "r/a2:1", "/k/a-copy.pem"),
		withMarker(enc("jwe-b", "r/b:1", "/k/b.pem"), "hello b", ""),
		{Name: "other-plain", Reference: "r/other:1"},
	}
	f, err := SelectFixtures(vs, read)
	if err != nil {
		t.Fatal(err)
	}
	if f.A.Name != "jwe-a" || f.B.Name != "jwe-b" || f.Plain != "r/a-plain:1" || f.A.Marker != "hello a" {
		t.Fatalf("selected A=%s B=%s plain=%s", f.A.Name, f.B.Name, f.Plain)
	}
	if string(f.B.Key) != string(keyB) {
		t.Fatal("B's key bytes are not the key file's")
	}

	tests := []struct {
		name    string
		vs      []manifest.Variant
		wantErr string
	}{
		{"one key only", []manifest.Variant{enc("a", "r/a", "/k/a.pem"), {Name: "p", Reference: "r/p"}}, "need two encrypted variants"},
		{"no plain", []manifest.Variant{enc("a", "r/a", "/k/a.pem"), enc("b", "r/b", "/k/b.pem")}, "unencrypted variant"},
		{"unreadable key", []manifest.Variant{enc("a", "r/a", "/k/missing.pem")}, "failed to read key of fixture a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := SelectFixtures(tc.vs, read); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
			}
		})
	}
}

// LoadFixtures reads the manifest through package fixtures/manifest, and only that way.
func TestLoadFixtures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, keyB := filepath.Join(dir, "a.pem"), filepath.Join(dir, "b.pem")
	for p, data := range map[string][]byte{keyA: ecPEM(t, false), keyB: ecPEM(t, true)} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := &manifest.Manifest{SchemaVersion: manifest.SchemaVersion, Variants: []manifest.Variant{
		{Name: "a", Reference: "r/a:1", Encrypted: true, KeyFiles: []string{keyA}, PlainTwin: "r/a-plain:1"},
		{Name: "b", Reference: "r/b:1", Encrypted: true, KeyFiles: []string{keyB}},
	}}
	goodPath := filepath.Join(dir, "good", manifest.FileName)
	if err := os.MkdirAll(filepath.Dir(goodPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := manifest.Write(goodPath, good); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{name: "written by fixtures/manifest", path: goodPath},
		{name: "missing", path: filepath.Join(dir, "none.json"), wantErr: "failed to read fixtures manifest"},
		{name: "not json", path: write("bad.json", "{"), wantErr: "failed to parse fixtures manifest"},
		{name: "another schema version", path: write("v2.json", `{"schemaVersion":2,"variants":[{"name":"a"}]}`), wantErr: "schemaVersion 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := LoadFixtures(tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || f.A.Name != "a" || f.B.Name != "b" || f.Plain != "r/a-plain:1" {
				t.Fatalf("LoadFixtures = %+v, %v", f, err)
			}
		})
	}
}
