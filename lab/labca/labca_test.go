package labca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var hosts = []string{"iam.example.test", "kms.example.test"}

func TestEnsureMakesATrustedServingCertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	f, made, err := Ensure(dir, hosts, time.Now())
	if err != nil || !made {
		t.Fatalf("Ensure = %v, made %v", err, made)
	}
	for path, want := range map[string]os.FileMode{f.Key: 0o600, filepath.Join(dir, caKey): 0o600, f.Cert: 0o644, f.CA: 0o644} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v, want %v", path, err, st.Mode().Perm(), want)
		}
	}
	// A TLS server with the certificate is trusted by a client with only the CA, for each name.
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	for _, h := range append(hosts, "other.example.test") {
		addr := srv.Listener.Addr().String()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}}
		resp, err := (&http.Client{Transport: tr}).Get("https://" + h + "/")
		wantOK := h != "other.example.test"
		if (err == nil) != wantOK {
			t.Errorf("GET https://%s/: err %v, want ok %v", h, err, wantOK)
		}
		if err == nil {
			resp.Body.Close()
		}
	}
}

func TestEnsureReusesOrRenews(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name     string
		hosts    []string
		at       time.Time
		tamper   func(f Files)
		wantMade bool
	}{
		{name: "same names, still valid", hosts: hosts, at: now.Add(24 * time.Hour)},
		{name: "a subset of the names", hosts: hosts[:1], at: now},
		{name: "a new name", hosts: append(hosts, "new.example.test"), at: now, wantMade: true},
		{name: "within 30 days of expiry", hosts: hosts, at: now.Add(lifetime - 10*24*time.Hour), wantMade: true},
		{name: "key removed", hosts: hosts, at: now, tamper: func(f Files) { os.Remove(f.Key) }, wantMade: true},
		{name: "key of another certificate", hosts: hosts, at: now, tamper: func(f Files) {
			other, _, err := Ensure(filepath.Join(filepath.Dir(f.Dir), "other"), hosts, now)
			if err != nil {
				panic(err)
			}
			data, _ := os.ReadFile(other.Key)
			os.WriteFile(f.Key, data, 0o600)
		}, wantMade: true},
		{name: "CA certificate garbled", hosts: hosts, at: now, tamper: func(f Files) { os.WriteFile(f.CA, []byte("junk"), 0o644) }, wantMade: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			f, _, err := Ensure(dir, hosts, now)
			if err != nil {
				t.Fatal(err)
			}
			if tc.tamper != nil {
				tc.tamper(f)
			}
			_, made, err := Ensure(dir, tc.hosts, tc.at)
			if err != nil || made != tc.wantMade {
				t.Fatalf("second Ensure = %v, made %v, want made %v", err, made, tc.wantMade)
			}
			if err := FilesIn(dir).fits(tc.hosts, tc.at); err != nil {
				t.Errorf("after Ensure the files do not fit: %v", err)
			}
		})
	}
}

func TestEnsureRefusesNoNames(t *testing.T) {
	for _, h := range [][]string{nil, {"a.example.test", ""}} {
		if _, _, err := Ensure(t.TempDir(), h, time.Now()); err == nil {
			t.Errorf("Ensure(%q) = nil, want an error", h)
		}
	}
}
