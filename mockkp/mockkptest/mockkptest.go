// Package mockkptest starts mockkp on loopback for tests: one seeded instance, API key and
// root key with fixed ids, the API and IAM on one server and the admin API on another.
package mockkptest

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"

	kp "github.com/IBM/keyprotect-go-client"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/mockkp"
)

// Fixed ids of the seeded instance, API key and root key.
const (
	InstanceID  = "11111111-2222-4333-8444-555555555555"
	APIKey      = "mockkptest-apikey-0123456789abcdef"
	RootKeyID   = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	RootKeyName = "mockkptest-root"
)

// Env is a running mockkp.
type Env struct {
	URL        string // Key Protect base URL (no trailing slash)
	TokenURL   string // IAM token endpoint (URL + "/identity/token")
	AdminURL   string // admin API (faults, counters)
	InstanceID string
	APIKey     string
	RootKeyID  string
	Server     *mockkp.Server
}

// Option adjusts the mockkp.Options (clock, token TTL, state file, logger, extra seed).
// The Seed already holds the fixed instance; options may append to it.
type Option func(*mockkp.Options)

// WithOptions applies f to the options.
func WithOptions(f func(*mockkp.Options)) Option { return Option(f) }

// Seed returns the seed Start uses: InstanceID with APIKey and root key RootKeyID.
func Seed() *mockkp.Seed {
	return &mockkp.Seed{Instances: []mockkp.SeedInstance{{
		ID:       InstanceID,
		APIKeys:  []string{APIKey},
		RootKeys: []mockkp.SeedKey{{ID: RootKeyID, Name: RootKeyName}},
	}}}
}

// Start starts mockkp on loopback; the servers stop when the test ends.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	o := mockkp.Options{Seed: Seed()}
	for _, f := range opts {
		f(&o)
	}
	srv, err := mockkp.New(o)
	if err != nil {
		t.Fatalf("failed to create mockkp: %v", err)
	}
	api := httptest.NewServer(srv.Handler())
	t.Cleanup(api.Close)
	admin := httptest.NewServer(srv.AdminHandler())
	t.Cleanup(admin.Close)
	return &Env{
		URL: api.URL, TokenURL: api.URL + "/identity/token", AdminURL: admin.URL,
		InstanceID: InstanceID, APIKey: APIKey, RootKeyID: RootKeyID, Server: srv,
	}
}

// Config is the keyprotect-config config.json that reaches this mockkp.
func (e *Env) Config() kpkey.Config {
	return kpkey.Config{URL: e.URL, InstanceID: e.InstanceID, APIKey: e.APIKey, TokenURL: e.TokenURL}
}

// Client builds the official Key Protect client for Config with transport (nil:
// kp.DefaultTransport).
func (e *Env) Client(t testing.TB, transport http.RoundTripper) *kp.Client {
	t.Helper()
	c, err := kpkey.NewClient(e.Config(), transport)
	if err != nil {
		t.Fatalf("failed to create Key Protect client: %v", err)
	}
	return c
}

// Ciphertext wraps pemData under the seeded root key with the kp-key convention and returns
// the ciphertext for a kp-key Secret.
func (e *Env) Ciphertext(t testing.TB, pemData []byte) string {
	t.Helper()
	ct, err := kpkey.Wrap(t.Context(), e.Client(t, nil), e.RootKeyID, pemData)
	if err != nil {
		t.Fatalf("failed to wrap: %v", err)
	}
	return ct
}

// Material is a fixed root key material for seeds that must be reproducible without a state
// file (base64 of 32 bytes).
func Material(b byte) string {
	m := make([]byte, 32)
	for i := range m {
		m[i] = b
	}
	return base64.StdEncoding.EncodeToString(m)
}
