// Package labca is a lab's own certificate authority: one CA and one serving certificate for
// the public host names a lab answers itself (IBM Cloud IAM's and Key Protect's, served by
// mockkp). The synchronizer under test is told to trust the CA (SSL_CERT_FILE, or a mounted
// bundle), so a client that cannot be given another token URL still reaches mockkp by the
// names it already uses, over TLS, and never the real hosts.
//
// The files live in one directory and are kept across ups while they still cover the names and
// stay valid for a while; anything else makes a new CA and certificate.
package labca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/keysync-dev/keysync/internal/atomicfile"
)

// File names in the directory.
const (
	CAFile   = "ca.crt"  // the CA certificate: what clients trust
	CertFile = "tls.crt" // the serving certificate (leaf only)
	KeyFile  = "tls.key" // its private key (mode 0600)
	caKey    = "ca.key"  // the CA's private key (mode 0600), kept to re-issue for new names
)

// Lifetimes: a lab lives days, not years; a certificate closer than renewBefore to its end is
// replaced on the next up.
const (
	lifetime    = 365 * 24 * time.Hour
	renewBefore = 30 * 24 * time.Hour
)

// Files are the paths of one lab CA's files.
type Files struct {
	Dir, CA, Cert, Key string
}

// FilesIn names the files of the CA in dir.
func FilesIn(dir string) Files {
	return Files{Dir: dir, CA: filepath.Join(dir, CAFile), Cert: filepath.Join(dir, CertFile), Key: filepath.Join(dir, KeyFile)}
}

// Ensure makes sure dir holds a CA and a serving certificate for hosts (DNS names; none may be
// empty), valid for at least 30 more days. It reuses what is there when it fits and reports
// whether it made anything new.
func Ensure(dir string, hosts []string, now time.Time) (Files, bool, error) {
	f := FilesIn(dir)
	if len(hosts) == 0 || slices.Contains(hosts, "") {
		return f, false, errors.New("the lab CA needs at least one host name, none empty")
	}
	if err := f.fits(hosts, now); err == nil {
		return f, false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return f, false, fmt.Errorf("failed to create the lab CA dir: %w", err)
	}
	caCert, caPriv, err := issueCA(now)
	if err != nil {
		return f, false, err
	}
	leaf, leafPriv, err := issueLeaf(caCert, caPriv, hosts, now)
	if err != nil {
		return f, false, err
	}
	caKeyPEM, err := keyPEM(caPriv)
	if err != nil {
		return f, false, err
	}
	leafKeyPEM, err := keyPEM(leafPriv)
	if err != nil {
		return f, false, err
	}
	// Keys first, the CA certificate last: a half-made directory never passes fits.
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{filepath.Join(dir, caKey), caKeyPEM, 0o600},
		{f.Key, leafKeyPEM, 0o600},
		{f.Cert, certPEM(leaf), 0o644},
		{f.CA, certPEM(caCert), 0o644},
	} {
		if err := atomicfile.Write(w.path, w.data, w.mode); err != nil {
			return f, false, fmt.Errorf("failed to write the lab CA: %w", err)
		}
	}
	return f, true, nil
}

// fits checks that the files exist, chain to the CA, pair with the key, cover hosts and stay
// valid past now+renewBefore.
func (f Files) fits(hosts []string, now time.Time) error {
	caCert, err := readCert(f.CA)
	if err != nil {
		return err
	}
	leaf, err := readCert(f.Cert)
	if err != nil {
		return err
	}
	if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
		return fmt.Errorf("the lab certificate and key do not pair: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	for _, h := range hosts {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: pool, CurrentTime: now.Add(renewBefore)}); err != nil {
			return fmt.Errorf("the lab certificate does not serve %s: %w", h, err)
		}
	}
	return nil
}

func issueCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to generate the lab CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "keysync lab CA", Organization: []string{"keysync lab"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(lifetime),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to sign the lab CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to parse the lab CA: %w", err)
	}
	return cert, priv, nil
}

func issueLeaf(ca *x509.Certificate, caPriv *ecdsa.PrivateKey, hosts []string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to generate the lab certificate's key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: hosts[0], Organization: []string{"keysync lab"}},
		DNSNames: slices.Clone(hosts), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(lifetime),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &priv.PublicKey, caPriv)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to sign the lab certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to parse the lab certificate: %w", err)
	}
	return cert, priv, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		// crypto/rand does not fail on Linux; a fixed serial still makes a valid certificate.
		return big.NewInt(1)
	}
	return n
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("failed to encode a lab CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(b.Bytes)
}
