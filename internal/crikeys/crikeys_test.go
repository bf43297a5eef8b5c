package crikeys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func pemOf(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	ecPKCS8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	pub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	//nolint:staticcheck // legacy PEM encryption is exactly the negative case under test.
	encBlock, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), []byte("pw"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1PEM := pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))

	tests := []struct {
		name    string
		in      []byte
		wantErr error
		wantPEM string // PEM type of the output when accepted
	}{
		{"pkcs1 pem", pkcs1PEM, nil, "RSA PRIVATE KEY"},
		{"pkcs8 pem", pemOf(t, "PRIVATE KEY", pkcs8), nil, "PRIVATE KEY"},
		{"ec pkcs8 pem", pemOf(t, "PRIVATE KEY", ecPKCS8), nil, "PRIVATE KEY"},
		{"ec sec1 pem is converted", pemOf(t, "EC PRIVATE KEY", sec1), nil, "PRIVATE KEY"},
		{"pkcs8 der", pkcs8, nil, ""},
		{"empty", nil, ErrEmpty, ""},
		{"public key", pemOf(t, "PUBLIC KEY", pub), ErrUnknownType, ""},
		{"encrypted pem", pem.EncodeToMemory(encBlock), ErrPasswordRequired, ""},
		{"base64 of pem", []byte(base64.StdEncoding.EncodeToString(pkcs1PEM)), ErrUnknownType, ""},
		{"leading spaces", []byte("  " + strings.ReplaceAll(string(pkcs1PEM), "\n", "\n  ")), ErrUnknownType, ""},
		{"text", []byte("# README\n"), ErrUnknownType, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := Normalize(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Normalize() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if k, err := Classify(out); err != nil || k != PrivateKey {
				t.Fatalf("normalized output classifies as %q, %v", k, err)
			}
			if tt.wantPEM != "" {
				b, _ := pem.Decode(out)
				if b == nil || b.Type != tt.wantPEM {
					t.Fatalf("output PEM type = %v, want %q", b, tt.wantPEM)
				}
			}
		})
	}
}

func TestLoadDirAndAudit(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)

	tests := []struct {
		name      string
		files     map[string][]byte
		symlink   bool
		wantErr   error
		wantAudit int
		wantKeys  int
	}{
		{name: "missing dir", wantKeys: 0},
		{name: "one key in a subdir", files: map[string][]byte{"synced/a.pem": good}, wantKeys: 1},
		{name: "dot file is read", files: map[string][]byte{"synced/.a": good, "b": good}, wantKeys: 2},
		{name: "public key poisons", files: map[string][]byte{"a": good, "synced/pub": pemOf(t, "PUBLIC KEY", pub)}, wantErr: ErrUnknownType, wantAudit: 1},
		{name: "symlink poisons", files: map[string][]byte{"a": good}, symlink: true, wantErr: ErrSymlink, wantAudit: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "keys")
			for name, data := range tt.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tt.symlink {
				if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
					t.Fatal(err)
				}
			}
			dc, err := LoadDir(dir)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("LoadDir() error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && len(dc.Parameters["privkeys"]) != tt.wantKeys {
				t.Fatalf("LoadDir() found %d private keys, want %d", len(dc.Parameters["privkeys"]), tt.wantKeys)
			}
			problems, err := Audit(dir)
			if err != nil {
				t.Fatalf("Audit() error = %v", err)
			}
			if len(problems) != tt.wantAudit {
				t.Fatalf("Audit() = %v, want %d problems", problems, tt.wantAudit)
			}
		})
	}
}
