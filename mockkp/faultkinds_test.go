package mockkp_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

// faultOutcome is how one request ended.
type faultOutcome struct {
	status     int    // 0: no answer
	retryAfter string // the Retry-After header
	timeout    bool   // the client timed out
	closed     bool   // the connection was closed without an answer
}

// faultStep advances the clock, then sends a request that is faulted or not.
type faultStep struct {
	advance time.Duration
	faulted bool
}

// TestFaultKindsOnUnwrapAndToken: every fault kind a synchronizer's conformance needs, on the
// unwrap and the IAM token operations, for N requests and for a duration. Each request is
// raw HTTP with a client timeout of 500ms, so a latency beyond it is a client timeout.
func TestFaultKindsOnUnwrapAndToken(t *testing.T) {
	const clientTimeout = 500 * time.Millisecond
	kinds := []struct {
		name  string
		fault mockkp.Fault
		want  faultOutcome
	}{
		{"500", mockkp.Fault{Kind: mockkp.FaultStatus, Status: 500}, faultOutcome{status: 500}},
		{"503", mockkp.Fault{Kind: mockkp.FaultStatus, Status: 503}, faultOutcome{status: 503}},
		{"503 with Retry-After", mockkp.Fault{Kind: mockkp.FaultStatus, Status: 503, RetryAfter: mockkp.Duration(5 * time.Second)}, faultOutcome{status: 503, retryAfter: "5"}},
		{"429 with Retry-After", mockkp.Fault{Kind: mockkp.FaultStatus, Status: 429, RetryAfter: mockkp.Duration(2 * time.Second)}, faultOutcome{status: 429, retryAfter: "2"}},
		{"delay beyond the client timeout", mockkp.Fault{Kind: mockkp.FaultLatency, Latency: mockkp.Duration(2 * time.Second)}, faultOutcome{timeout: true}},
		{"connection closed", mockkp.Fault{Kind: mockkp.FaultDrop}, faultOutcome{closed: true}},
	}
	modes := []struct {
		name string
		// set configures the fault's extent; steps are clock advances before each request
		// and whether that request is faulted.
		set   func(f *mockkp.Fault)
		steps []faultStep
	}{
		{"count 2", func(f *mockkp.Fault) { f.Count = 2 }, []faultStep{{0, true}, {0, true}, {0, false}}},
		{"for 10s", func(f *mockkp.Fault) { f.For = mockkp.Duration(10 * time.Second) }, []faultStep{{0, true}, {0, true}, {0, true}, {9 * time.Second, true}, {time.Second, false}, {0, false}}},
	}
	ops := []string{mockkp.OpUnwrap, mockkp.OpToken}
	for _, op := range ops {
		for _, k := range kinds {
			for _, m := range modes {
				t.Run(op+"/"+k.name+"/"+m.name, func(t *testing.T) {
					clock := newFakeClock()
					env := mockkptest.Start(t, withClock(clock))
					send := requester(t, env, op, clientTimeout)
					f := k.fault
					f.Op = op
					m.set(&f)
					if err := env.Server.AddFault(f); err != nil {
						t.Fatalf("AddFault: %v", err)
					}
					for i, st := range m.steps {
						clock.Advance(st.advance)
						want := faultOutcome{status: 200}
						if st.faulted {
							want = k.want
						}
						if got := send(); got != want {
							t.Fatalf("request %d: got %+v, want %+v", i, got, want)
						}
					}
					if n := env.Server.Requests(op); n < int64(len(m.steps)) {
						t.Fatalf("%s requests = %d, want at least %d", op, n, len(m.steps))
					}
					if left := env.Server.Faults(); len(left) != 0 {
						t.Fatalf("faults left after the last step: %+v", left)
					}
				})
			}
		}
	}
}

// requester returns a function sending one request of op (unwrap of a valid ciphertext, or a
// token request) and classifying the outcome.
func requester(t *testing.T, env *mockkptest.Env, op string, timeout time.Duration) func() faultOutcome {
	t.Helper()
	ct := env.Ciphertext(t, []byte("pem"))
	token := fetchToken(t, env, env.APIKey)
	hc := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	return func() faultOutcome {
		var req *http.Request
		var err error
		if op == mockkp.OpToken {
			form := url.Values{"grant_type": {"urn:ibm:params:oauth:grant-type:apikey"}, "apikey": {env.APIKey}}
			req, err = http.NewRequestWithContext(t.Context(), http.MethodPost, env.TokenURL, strings.NewReader(form.Encode()))
			if err == nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
		} else {
			req, err = http.NewRequestWithContext(t.Context(), http.MethodPost,
				env.URL+"/api/v2/keys/"+env.RootKeyID+"/actions/unwrap", strings.NewReader(`{"ciphertext":"`+ct+`"}`))
			if err == nil {
				req.Header.Set("authorization", "Bearer "+token)
				req.Header.Set("bluemix-instance", env.InstanceID)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		var out faultOutcome
		resp, err := hc.Do(req)
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				out.timeout = true
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "connection reset"):
				out.closed = true
			default:
				t.Fatalf("request failed in an unexpected way: %v", err)
			}
			return out
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		out.status, out.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
		if resp.StatusCode != http.StatusOK && op == mockkp.OpUnwrap && envelopeCode(body) == "" {
			t.Fatalf("%d without the service's error envelope: %s", resp.StatusCode, body)
		}
		if resp.StatusCode != http.StatusOK && op == mockkp.OpToken && !strings.Contains(string(body), `"errorCode"`) {
			t.Fatalf("%d without the IAM error body: %s", resp.StatusCode, body)
		}
		return out
	}
}

func TestFaultValidation(t *testing.T) {
	tests := []struct {
		name    string
		fault   mockkp.Fault
		wantErr string
	}{
		{"for and count", mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultDrop, Count: 2, For: mockkp.Duration(time.Second)}, "exclude each other"},
		{"negative for", mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultDrop, For: -1}, "for must be"},
		{"for too long", mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultDrop, For: mockkp.Duration(25 * time.Hour)}, "for must be"},
		{"retryAfter on a drop", mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultDrop, RetryAfter: mockkp.Duration(time.Second)}, "status and html only"},
		{"retryAfter too long", mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultStatus, Status: 429, RetryAfter: mockkp.Duration(2 * time.Hour)}, "retryAfter must be"},
		{"valid for", mockkp.Fault{Op: "token", Kind: mockkp.FaultStatus, Status: 503, For: mockkp.Duration(time.Minute)}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fault.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

// TestFaultForListsTimeLeft: GET /faults shows a timed fault's time left, and drops it once
// the time is up.
func TestFaultForListsTimeLeft(t *testing.T) {
	clock := newFakeClock()
	env := mockkptest.Start(t, withClock(clock))
	status, body := adminCall(t, env, "POST", "/faults", `{"op":"unwrap","kind":"status","status":503,"for":"1m","retryAfter":"3s"}`)
	if status != 201 || !strings.Contains(string(body), `"for":"1m0s"`) {
		t.Fatalf("POST /faults = %d %s", status, body)
	}
	clock.Advance(20 * time.Second)
	if status, body := adminCall(t, env, "GET", "/faults", ""); status != 200 || !strings.Contains(string(body), `"for":"40s"`) || !strings.Contains(string(body), `"retryAfter":"3s"`) {
		t.Fatalf("GET /faults after 20s = %d %s, want 40s left", status, body)
	}
	clock.Advance(40 * time.Second)
	if status, body := adminCall(t, env, "GET", "/faults", ""); status != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("GET /faults after 60s = %d %s, want none", status, body)
	}
}
