package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kp "github.com/IBM/keyprotect-go-client"

	"github.com/keysync-dev/keysync/internal/kpkey"
)

const testSeed = `{"instances":[{"id":"inst-1","apiKeys":["key-1"],"rootKeys":[{"id":"root-1","name":"lab root"}]}]}`

// start runs mockkp with args until the test ends and returns the ready file's values.
func start(t *testing.T, args ...string) (map[string]string, <-chan error) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready.env")
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	cmd := newCommand(io.Discard, &stderr)
	cmd.SetArgs(append([]string{"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--ready-file", ready}, args...))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(ready)
		if err == nil {
			env := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				k, v, _ := strings.Cut(line, "=")
				env[k] = v
			}
			return env, done
		}
		select {
		case err := <-done:
			t.Fatalf("mockkp exited: %v (%s)", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mockkp did not become ready: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunWithSeedAndState(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.json")
	if err := os.WriteFile(seed, []byte(testSeed), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state.json")
	pemData := []byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n")

	var ct string
	for i, name := range []string{"first run", "after restart"} {
		t.Run(name, func(t *testing.T) {
			env, _ := start(t, "--seed", seed, "--state", state)
			for _, k := range []string{"MOCKKP_URL", "MOCKKP_TOKEN_URL", "MOCKKP_ADMIN_URL"} {
				if !strings.HasPrefix(env[k], "http://127.0.0.1:") {
					t.Fatalf("%s = %q", k, env[k])
				}
			}
			c, err := kpkey.NewClient(kpkey.Config{URL: env["MOCKKP_URL"] + "/", InstanceID: "inst-1", APIKey: "key-1", TokenURL: env["MOCKKP_TOKEN_URL"]}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				if ct, err = kpkey.Wrap(t.Context(), c, "root-1", pemData); err != nil {
					t.Fatalf("Wrap: %v", err)
				}
			}
			got, err := kpkey.Unwrap(t.Context(), c, "root-1", ct)
			if err != nil || !bytes.Equal(got, pemData) {
				t.Fatalf("Unwrap: %v", err)
			}
			resp, err := http.Get(env["MOCKKP_ADMIN_URL"] + "/counters")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), `"unwrap":1`) {
				t.Fatalf("counters = %s, want one unwrap", body)
			}
		})
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	badSeed := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badSeed, []byte(`{"instances":[{"id":""}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"tls cert without key", []string{"--tls-cert", "x.crt"}, "go together"},
		{"tls addr without cert", []string{"--tls-addr", "127.0.0.1:0"}, "--tls-addr needs --tls-cert"},
		{"tls cert that is not there", []string{"--tls-addr", "127.0.0.1:0", "--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"}, "invalid --tls-cert/--tls-key"},
		{"bad seed", []string{"--seed", badSeed}, "invalid seed file"},
		{"missing seed", []string{"--seed", filepath.Join(dir, "none.json")}, "failed to read seed file"},
		{"bad log format", []string{"--log-format", "xml"}, "--log-format"},
		{"bad rate limit", []string{"--rate-limit", "unwrap"}, "invalid --rate-limit"},
		{"rate limit of an unknown op", []string{"--rate-limit", "explode=1"}, "unknown op"},
		{"bad addr", []string{"--addr", "256.0.0.1:1"}, "failed to listen on --addr"},
		{"extra argument", []string{"serve"}, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newCommand(io.Discard, io.Discard)
			cmd.SetArgs(append([]string{"--admin-addr", ""}, tc.args...))
			err := cmd.ExecuteContext(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	cmd := newCommand(&out, &out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"--addr", "--admin-addr", "--state", "--seed", "--tls-cert", "--tls-key", "--tls-addr", "--token-ttl", "--log-format", "--log-level", "--ready-file", "--rate-limit", "POST /faults", "POST /ratelimits"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("--help does not mention %s", f)
		}
	}
}

func TestRunTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	seed := filepath.Join(dir, "seed.json")
	if err := os.WriteFile(seed, []byte(testSeed), 0o600); err != nil {
		t.Fatal(err)
	}
	env, _ := start(t, "--seed", seed, "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(env["MOCKKP_URL"], "https://") {
		t.Fatalf("MOCKKP_URL = %s, want https", env["MOCKKP_URL"])
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.PostForm(env["MOCKKP_TOKEN_URL"], url.Values{"grant_type": {"urn:ibm:params:oauth:grant-type:apikey"}, "apikey": {"key-1"}})
	if err != nil {
		t.Fatalf("token over TLS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tok := between(string(body), `"access_token":"`, `"`)
	if resp.StatusCode != 200 || tok == "" {
		t.Fatalf("token over TLS = %d", resp.StatusCode)
	}
	// The official client with a transport that trusts the certificate (the IAM call is
	// replaced by a ready token: the client would use Go's default transport for it).
	c, err := kp.New(kp.ClientConfig{BaseURL: env["MOCKKP_URL"], InstanceID: "inst-1", Authorization: "Bearer " + tok},
		&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(base64.StdEncoding.EncodeToString([]byte("tls")))
	ct, err := c.Wrap(t.Context(), "root-1", plain, nil)
	if err != nil {
		t.Fatalf("Wrap over TLS: %v", err)
	}
	if got, err := c.Unwrap(t.Context(), "root-1", ct, nil); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Unwrap over TLS: %v", err)
	}
	// Plain HTTP to the TLS port fails.
	plainURL := strings.Replace(env["MOCKKP_URL"], "https://", "http://", 1)
	if resp, err := http.Get(plainURL + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP to the TLS listener answered 200")
		}
	}
}

// TestRunTLSAddr: --tls-addr serves the same API over HTTPS while --addr stays plain HTTP (the
// labs: the suites on --addr, the synchronizer on the public names).
func TestRunTLSAddr(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	seed := filepath.Join(dir, "seed.json")
	if err := os.WriteFile(seed, []byte(testSeed), 0o600); err != nil {
		t.Fatal(err)
	}
	env, _ := start(t, "--seed", seed, "--tls-cert", certFile, "--tls-key", keyFile, "--tls-addr", "127.0.0.1:0")
	if !strings.HasPrefix(env["MOCKKP_URL"], "http://") || !strings.HasPrefix(env["MOCKKP_TLS_URL"], "https://") {
		t.Fatalf("MOCKKP_URL = %s, MOCKKP_TLS_URL = %s: want http and https", env["MOCKKP_URL"], env["MOCKKP_TLS_URL"])
	}
	form := url.Values{"grant_type": {"urn:ibm:params:oauth:grant-type:apikey"}, "apikey": {"key-1"}}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, u := range []string{env["MOCKKP_URL"], env["MOCKKP_TLS_URL"]} {
		resp, err := hc.PostForm(u+"/oidc/token", form)
		if err != nil {
			t.Fatalf("token from %s: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("token from %s = %d", u, resp.StatusCode)
		}
	}
	// The TLS listener does not answer plain HTTP.
	plainURL := strings.Replace(env["MOCKKP_TLS_URL"], "https://", "http://", 1)
	if resp, err := http.Get(plainURL + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP to the --tls-addr listener answered 200")
		}
	}
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}

func selfSigned(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mockkp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestRunRateLimit(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.json")
	if err := os.WriteFile(seed, []byte(testSeed), 0o600); err != nil {
		t.Fatal(err)
	}
	env, _ := start(t, "--seed", seed, "--rate-limit", "unwrap=1:2", "--rate-limit", "token=100")
	cfg := kpkey.Config{URL: env["MOCKKP_URL"], InstanceID: "inst-1", APIKey: "key-1", TokenURL: env["MOCKKP_TOKEN_URL"]}
	c, err := kpkey.NewClient(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	oldMax := kp.RetryMax
	kp.RetryMax = 0
	t.Cleanup(func() { kp.RetryMax = oldMax })
	ct, err := kpkey.Wrap(t.Context(), c, "root-1", []byte("pem"))
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	for i, want := range []int{200, 200, 429} {
		_, err := kpkey.Unwrap(t.Context(), c, "root-1", ct)
		var kerr *kp.Error
		switch {
		case want == 200 && err != nil:
			t.Fatalf("unwrap %d: %v", i, err)
		case want == 429 && (!errors.As(err, &kerr) || kerr.StatusCode != 429):
			t.Fatalf("unwrap %d = %v, want a 429", i, err)
		}
	}
	resp, err := http.Get(env["MOCKKP_ADMIN_URL"] + "/ratelimits")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `[{"op":"token","rate":100},{"op":"unwrap","rate":1,"burst":2}]`; strings.TrimSpace(string(body)) != want {
		t.Fatalf("GET /ratelimits = %s, want %s", body, want)
	}
	resp, err = http.Get(env["MOCKKP_ADMIN_URL"] + "/counters")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"ratelimited.unwrap":1`) || !strings.Contains(string(body), `"unwrap":3`) {
		t.Fatalf("counters = %s, want unwrap 3 and ratelimited.unwrap 1", body)
	}
}
