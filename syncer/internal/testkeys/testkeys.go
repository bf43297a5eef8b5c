// Package testkeys generates the key encodings the synchronizer's tests feed it: good ones
// (PKCS#8, PKCS#1, SEC1 EC) and the bad forms CRI-O rejects.
package testkeys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// EC returns a fresh P-256 key.
func EC(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("failed to generate EC key: %v", err)
	}
	return k
}

// PKCS8 returns a fresh P-256 key as a PKCS#8 "PRIVATE KEY" PEM.
func PKCS8(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(EC(t))
	if err != nil {
		t.Fatalf("failed to marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// RSA returns a fresh 1024-bit RSA key as a PKCS#1 "RSA PRIVATE KEY" PEM (small: tests only).
func RSA(t testing.TB) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatalf("failed to generate RSA key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

// SEC1 returns a fresh P-256 key as a SEC1 "EC PRIVATE KEY" PEM.
func SEC1(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(EC(t))
	if err != nil {
		t.Fatalf("failed to marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// Public returns a P-256 public key PEM.
func Public(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&EC(t).PublicKey)
	if err != nil {
		t.Fatalf("failed to marshal public key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Encrypted returns a password-protected (legacy PEM encryption) RSA key.
func Encrypted(t testing.TB) []byte {
	t.Helper()
	block, _ := pem.Decode(RSA(t))
	//lint:ignore SA1019 the legacy format is exactly what users paste and CRI-O refuses
	enc, err := x509.EncryptPEMBlock(rand.Reader, block.Type, block.Bytes, []byte("pw"), x509.PEMCipherAES256) //nolint:staticcheck
	if err != nil {
		t.Fatalf("failed to encrypt key: %v", err)
	}
	return pem.EncodeToMemory(enc)
}

// Base64 returns base64 of a PEM (a double-encoded Secret value).
func Base64(t testing.TB) []byte {
	t.Helper()
	return []byte(base64.StdEncoding.EncodeToString(PKCS8(t)))
}

// LeadingSpaces returns a PEM whose lines are indented.
func LeadingSpaces(t testing.TB) []byte {
	t.Helper()
	lines := strings.Split(string(PKCS8(t)), "\n")
	for i := range lines {
		if lines[i] != "" {
			lines[i] = "  " + lines[i]
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// CRLF returns a PEM with Windows line ends.
func CRLF(t testing.TB) []byte {
	t.Helper()
	return []byte(strings.ReplaceAll(string(PKCS8(t)), "\n", "\r\n"))
}

// Certificate returns a self-signed certificate PEM (ocicrypt classifies it, but not as a
// private key).
func Certificate(t testing.TB) []byte {
	t.Helper()
	k := EC(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatalf("failed to create certificate: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
