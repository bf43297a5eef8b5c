package kpkey_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

func TestCheckEndpoints(t *testing.T) {
	const kp = "https://us-south.kms.cloud.ibm.com"
	tests := []struct {
		name, url, token string
		ok               bool
	}{
		{"defaults: public IAM", kp, "", true},
		{"public IAM", kp, "https://iam.cloud.ibm.com/identity/token", true},
		{"private IAM", "https://private.us-south.kms.cloud.ibm.com", "https://private.iam.cloud.ibm.com/identity/token", true},
		{"regional private IAM", kp, "https://private.us-south.iam.cloud.ibm.com/identity/token", true},
		{"the Key Protect host", "https://kp.internal:8443", "https://kp.internal:8443/identity/token", true},
		{"upper-case host", kp, "https://IAM.cloud.ibm.com/identity/token", true},
		{"http keyprotect-url", "http://us-south.kms.cloud.ibm.com", "", false},
		{"http token-url on IAM's host", kp, "http://iam.cloud.ibm.com/identity/token", false},
		{"foreign token host", kp, "https://collector.example/identity/token", false},
		{"look-alike host", kp, "https://iam.cloud.ibm.com.example/identity/token", false},
		{"look-alike suffix", kp, "https://evil-iam.cloud.ibm.com/identity/token", false},
		{"two labels in the region", kp, "https://private.a.b.iam.cloud.ibm.com/identity/token", false},
		{"mockkp on loopback", "http://127.0.0.1:8300", "http://127.0.0.1:8300/identity/token", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := kpkey.Config{URL: tc.url, InstanceID: "i", APIKey: "secret-api-key", TokenURL: tc.token}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			err := c.CheckEndpoints()
			if (err == nil) != tc.ok {
				t.Fatalf("CheckEndpoints = %v, want ok %v", err, tc.ok)
			}
			if err != nil && (!errors.Is(err, kpkey.ErrInsecureConfig) || strings.Contains(err.Error(), c.APIKey)) {
				t.Errorf("error %q: want ErrInsecureConfig without the API key", err)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	const good = `{"keyprotect-url":"https://us-south.kms.cloud.ibm.com","instance-id":"i","apikey":"secret-api-key"}`
	tests := []struct{ name, in, want string }{
		{"good", good, ""},
		{"good with trailing newline", good + "\n", ""},
		{"malformed", `{"keyprotect-url": `, "not valid JSON"},
		{"junk after the JSON", good + " junk", "data after"},
		{"a second object", good + good, "data after"},
		{"typo'd apikey", `{"keyprotect-url":"https://x","instance-id":"i","api-key":"secret-api-key"}`, "apikey is missing"},
		{"typo'd URL field", `{"keyprotect_url":"https://x","instance-id":"i","apikey":"secret-api-key"}`, "keyprotect-url is missing"},
		{"wrong type", `{"keyprotect-url":1,"instance-id":"i","apikey":"secret-api-key"}`, "wrong type"},
		{"not a URL", `{"keyprotect-url":"ftp://x","instance-id":"i","apikey":"secret-api-key"}`, "http(s) URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kpkey.ParseConfig([]byte(tc.in))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ParseConfig = %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, kpkey.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseConfig = %v, want ErrInvalidConfig mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret-api-key") {
				t.Errorf("error quotes the API key: %v", err)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {" 7 ", 7 * time.Second}, {"0", 0}, {"-1", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second}, {now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"999999999", 24 * time.Hour},
	} {
		if got := kpkey.ParseRetryAfter(tc.v, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

// TestTokenSource: against mockkp, the token source reports what IAM answered (HTML page, JSON
// error code, Retry-After, no answer) without the API key, and caches a good token.
func TestTokenSource(t *testing.T) {
	env := mockkptest.Start(t)
	cfg := env.Config()
	tests := []struct {
		name   string
		fault  *mockkp.Fault
		apiKey string
		want   kpkey.TokenError
	}{
		{name: "HTML 503", fault: &mockkp.Fault{Op: mockkp.OpToken, Kind: mockkp.FaultHTML, Status: 503}, want: kpkey.TokenError{Status: 503, What: "HTML page"}},
		{name: "HTML 429 with Retry-After", fault: &mockkp.Fault{Op: mockkp.OpToken, Kind: mockkp.FaultHTML, Status: 429, RetryAfter: mockkp.Duration(4 * time.Second)},
			want: kpkey.TokenError{Status: 429, What: "HTML page", After: 4 * time.Second}},
		{name: "JSON 500", fault: &mockkp.Fault{Op: mockkp.OpToken, Kind: mockkp.FaultStatus, Status: 500}, want: kpkey.TokenError{Status: 500, What: "JSON error", Code: mockkp.IAMCodeUnavailable}},
		{name: "dropped", fault: &mockkp.Fault{Op: mockkp.OpToken, Kind: mockkp.FaultDrop}, want: kpkey.TokenError{What: "no answer"}},
		{name: "unknown API key", apiKey: "wrong-api-key", want: kpkey.TokenError{Status: 400, What: "JSON error", Code: mockkp.IAMCodeAPIKeyNotFound}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(env.Server.ClearFaults)
			if tc.fault != nil {
				if err := env.Server.AddFault(*tc.fault); err != nil {
					t.Fatal(err)
				}
			}
			ts := &kpkey.TokenSource{URL: cfg.TokenEndpoint(), APIKey: cfg.APIKey, Client: &http.Client{}}
			if tc.apiKey != "" {
				ts.APIKey = tc.apiKey
			}
			_, err := ts.Token(t.Context())
			var te *kpkey.TokenError
			if !errors.As(err, &te) {
				t.Fatalf("Token = %v, want a *TokenError", err)
			}
			if te.Status != tc.want.Status || te.What != tc.want.What || te.Code != tc.want.Code || te.After != tc.want.After {
				t.Errorf("TokenError %+v, want %+v", *te, tc.want)
			}
			if strings.Contains(err.Error(), ts.APIKey) || strings.Contains(err.Error(), "<") {
				t.Errorf("error %q quotes the API key or the page", err)
			}
		})
	}
	ts := &kpkey.TokenSource{URL: cfg.TokenEndpoint(), APIKey: cfg.APIKey}
	env.Server.ResetCounters()
	for range 3 {
		if tok, err := ts.Token(t.Context()); err != nil || tok == "" {
			t.Fatalf("Token = %q, %v", tok, err)
		}
	}
	if n := env.Server.Requests(mockkp.OpToken); n != 1 {
		t.Errorf("%d token requests for 3 calls, want 1 (cached)", n)
	}
}
