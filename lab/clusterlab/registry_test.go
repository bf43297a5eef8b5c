package clusterlab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/internal/registryauth"
)

func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func caPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestNewRejectsBadRegistryInput: each bad input is a clear error from New, before any step
// runs (nothing pushed, nothing written).
func TestNewRejectsBadRegistryInput(t *testing.T) {
	t.Parallel()
	unreadable := filepath.Join(t.TempDir(), "missing-ca.pem")
	empty := writeFile(t, "auth.json", "", 0o600)
	otherHost := writeFile(t, "auth.json", `{"auths":{"other.test":{"auth":"dTpw"}}}`, 0o600)
	notPEM := writeFile(t, "ca.pem", "not a certificate\n", 0o644)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"scheme on --registry", Options{Registry: "https://reg.test:5000/team"}, "has a scheme"},
		{"scheme on --node-registry", Options{Registry: "reg.test", NodeRegistry: "http://node.test:5000"}, "has a scheme"},
		{"path on --node-registry", Options{Registry: "reg.test", NodeRegistry: "node.test:5000/team"}, "the repository prefix goes on --registry"},
		{"uppercase prefix", Options{Registry: "reg.test/Team"}, "must be lowercase path components"},
		{"empty path component", Options{Registry: "reg.test/team//x"}, "must be lowercase path components"},
		{"bad host", Options{Registry: "REG_TEST:5000"}, "invalid registry server"},
		{"bad port", Options{Registry: "reg.test:99999/team"}, "port must be a number"},
		{"unreadable CA", Options{Registry: "reg.test", CAFile: unreadable}, "--ca-file: failed to read the registry's CA"},
		{"CA without a certificate", Options{Registry: "reg.test", CAFile: notPEM}, "holds no PEM certificate"},
		{"empty auth file", Options{Registry: "reg.test", AuthFile: empty}, "--authfile: invalid auth file"},
		{"auth file for another host", Options{Registry: "reg.test", AuthFile: otherHost}, "has no entry for the registry reg.test"},
		{"creds without password", Options{Registry: "reg.test", Creds: "iamapikey"}, "want user:password"},
		{"creds and authfile", Options{Registry: "reg.test", Creds: "u:p", AuthFile: otherHost}, "exclude each other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Kubeconfig = "/nonexistent/kubeconfig"
			tt.opts.Out = t.TempDir()
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error with %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(tt.opts.Out); len(entries) != 0 {
				t.Fatalf("New wrote %d files", len(entries))
			}
		})
	}
}

func TestNewRegistrySettings(t *testing.T) {
	t.Parallel()
	ca := writeFile(t, "ca.pem", caPEM(t), 0o644)
	l, err := New(Options{Kubeconfig: "/k", Registry: "127.0.0.1:5001/team/a", NodeRegistry: "reg.test:5000",
		Creds: "iamapikey:pw", CAFile: ca, Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if l.reg != (registryTarget{push: "127.0.0.1:5001", node: "reg.test:5000", prefix: "team/a"}) {
		t.Fatalf("registry %+v", l.reg)
	}
	if got := l.reg.nodeRef("127.0.0.1:5001/team/a/x:1"); got != "reg.test:5000/team/a/x:1" {
		t.Fatalf("nodeRef = %s", got)
	}
	authPath, certDir, err := writeRegistryFiles(l.opts.Out, l.auth, l.ca)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(authPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("auth file %v %v, want mode 0600", st, err)
	}
	f, err := registryauth.Load(authPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(f.Hosts(), ",") != "127.0.0.1:5001,reg.test:5000" {
		t.Fatalf("auth file hosts %v", f.Hosts())
	}
	if _, err := os.Stat(filepath.Join(certDir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
}
