package mockkp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kp "github.com/IBM/keyprotect-go-client"
	"github.com/IBM/keyprotect-go-client/iam"

	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

func TestRestartWithState(t *testing.T) {
	dir := t.TempDir()
	statePath := filepath.Join(dir, "state.json")
	withState := mockkptest.WithOptions(func(o *mockkp.Options) { o.StatePath = statePath })
	plain := b64("survives a restart")

	env1 := mockkptest.Start(t, withState)
	c1 := env1.Client(t, nil)
	ctOld, err := c1.Wrap(t.Context(), env1.RootKeyID, plain, nil)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	if err := c1.Rotate(t.Context(), env1.RootKeyID, ""); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	created, err := c1.CreateRootKey(t.Context(), "created-before-restart", nil)
	if err != nil {
		t.Fatalf("CreateRootKey: %v", err)
	}
	ctNew, err := c1.Wrap(t.Context(), created.ID, plain, nil)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	token := fetchToken(t, env1, env1.APIKey)

	fi, err := os.Stat(statePath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file = %v, %v; want mode 0600", fi, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("state dir holds %d entries, want only the state file (no temp files)", len(entries))
	}
	data, _ := os.ReadFile(statePath)
	if bytes.Contains(data, []byte(mockkptest.APIKey)) {
		t.Fatalf("state file contains the API key")
	}

	env2 := mockkptest.Start(t, withState) // same state, seed applied again: no change
	c2 := env2.Client(t, nil)
	tests := []struct {
		name          string
		keyID         string
		ct            []byte
		wantRewrapped bool
	}{
		{"seeded key, old version", env2.RootKeyID, ctOld, true},
		{"created key", created.ID, ctNew, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, rewrapped, err := c2.UnwrapV2(t.Context(), tc.keyID, tc.ct, nil)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("UnwrapV2 after restart: %v", err)
			}
			if (len(rewrapped) > 0) != tc.wantRewrapped {
				t.Fatalf("rewrapped present = %v, want %v", len(rewrapped) > 0, tc.wantRewrapped)
			}
		})
	}
	// A token issued before the restart is still accepted.
	if _, err := c2.GetKey(kp.NewContextWithAuth(t.Context(), "Bearer "+token), env2.RootKeyID); err != nil {
		t.Fatalf("token from before the restart: %v", err)
	}
}

func TestBadStateAndSeed(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatalf("write: %v", err)
		}
		return p
	}
	seedCases := []struct {
		name, content, wantErr string
	}{
		{"not json", "{", "failed to decode seed"},
		{"unknown field", `{"instances":[],"x":1}`, "failed to decode seed"},
		{"no id", `{"instances":[{"apiKeys":["k"]}]}`, "id is missing"},
		{"no api key", `{"instances":[{"id":"i"}]}`, "at least one API key"},
		{"duplicate instance", `{"instances":[{"id":"i","apiKeys":["k"]},{"id":"i","apiKeys":["k"]}]}`, "duplicate instance"},
		{"key without name", `{"instances":[{"id":"i","apiKeys":["k"],"rootKeys":[{"id":"r"}]}]}`, "name is missing"},
		{"duplicate key", `{"instances":[{"id":"i","apiKeys":["k"],"rootKeys":[{"id":"r","name":"n"},{"id":"r","name":"m"}]}]}`, "duplicate key"},
		{"short material", `{"instances":[{"id":"i","apiKeys":["k"],"rootKeys":[{"id":"r","name":"n","material":"AAAA"}]}]}`, "32 bytes"},
	}
	for _, tc := range seedCases {
		t.Run("seed "+tc.name, func(t *testing.T) {
			_, err := mockkp.LoadSeed(write("seed.json", tc.content))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("LoadSeed error = %v, want %q", err, tc.wantErr)
			}
		})
	}
	good := `{"instances":[{"id":"i","apiKeys":["k"],"rootKeys":[{"id":"r","name":"n","material":"` + mockkptest.Material(1) + `"}]}]}`
	if _, err := mockkp.LoadSeed(write("seed.json", good)); err != nil {
		t.Fatalf("LoadSeed(good): %v", err)
	}
	stateCases := []struct{ name, content, wantErr string }{
		{"not json", "{", "invalid JSON"},
		{"no secret", `{"instances":{}}`, "token secret"},
		{"key without versions", `{"tokenSecret":"` + mockkptest.Material(2) + `","instances":{"i":{"id":"i","keys":{"k":{"id":"k","versions":[]}}}}}`, "no versions"},
	}
	for _, tc := range stateCases {
		t.Run("state "+tc.name, func(t *testing.T) {
			_, err := mockkp.New(mockkp.Options{StatePath: write("state.json", tc.content)})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestFixedMaterialIsReproducible(t *testing.T) {
	// Two servers seeded with the same material unwrap each other's ciphertexts.
	seed := func(o *mockkp.Options) { o.Seed.Instances[0].RootKeys[0].Material = mockkptest.Material(9) }
	a := mockkptest.Start(t, mockkptest.WithOptions(seed))
	b := mockkptest.Start(t, mockkptest.WithOptions(seed))
	plain := b64("reproducible")
	ct, err := a.Client(t, nil).Wrap(t.Context(), a.RootKeyID, plain, nil)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	got, err := b.Client(t, nil).Unwrap(t.Context(), b.RootKeyID, ct, nil)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Unwrap on the twin server: %v", err)
	}
}

func TestActionForms(t *testing.T) {
	env := mockkptest.Start(t)
	id := env.RootKeyID
	plain := string(b64("forms"))
	forms := []struct {
		name, wrapPath, unwrapPath string
		hdr                        map[string]string
	}{
		{"actions path", "/api/v2/keys/" + id + "/actions/wrap", "/api/v2/keys/" + id + "/actions/unwrap", nil},
		{"action query", "/api/v2/keys/" + id + "?action=wrap", "/api/v2/keys/" + id + "?action=unwrap", nil},
		{"double slash", "//api/v2/keys/" + id + "/actions/wrap", "//api/v2/keys/" + id + "/actions/unwrap", nil},
		{"docs content type", "/api/v2/keys/" + id + "/actions/wrap", "/api/v2/keys/" + id + "/actions/unwrap",
			map[string]string{"content-type": "application/vnd.ibm.kms.key_action+json"}},
	}
	for _, tc := range forms {
		t.Run(tc.name, func(t *testing.T) {
			res := raw(t, env, "POST", tc.wrapPath, `{"plaintext":"`+plain+`"}`, tc.hdr)
			var w struct{ Ciphertext string }
			if res.status != 200 || json.Unmarshal(res.body, &w) != nil || w.Ciphertext == "" {
				t.Fatalf("wrap = %d %s", res.status, res.code)
			}
			res = raw(t, env, "POST", tc.unwrapPath, `{"ciphertext":"`+w.Ciphertext+`"}`, tc.hdr)
			var u struct{ Plaintext string }
			if res.status != 200 || json.Unmarshal(res.body, &u) != nil || u.Plaintext != plain {
				t.Fatalf("unwrap = %d %s, plaintext matches %v", res.status, res.code, u.Plaintext == plain)
			}
		})
	}
	res := raw(t, env, "POST", "/api/v2/keys/"+id+"?action=disable", "", nil)
	if res.status != 204 {
		t.Fatalf("?action=disable = %d, want 204", res.status)
	}
	if res = raw(t, env, "POST", "/api/v2/keys/"+id+"?action=enable", "", nil); res.status != 204 {
		t.Fatalf("?action=enable = %d, want 204", res.status)
	}
}

func TestFaults(t *testing.T) {
	// These tests change the client's package-level retry settings: never parallel.
	tests := []struct {
		name      string
		fault     mockkp.Fault
		retries   int
		wantErr   func(t *testing.T, err error)
		wantCalls int64
		minTime   time.Duration
	}{
		{name: "429 without retries", fault: mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultStatus, Status: 429}, retries: 0,
			wantErr: statusIs(429, mockkp.CodeTooManyRequests), wantCalls: 1},
		{name: "500 without retries", fault: mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultStatus, Status: 500}, retries: 0,
			wantErr: statusIs(500, mockkp.CodeInternal), wantCalls: 1},
		{name: "503 without retries", fault: mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultStatus, Status: 503}, retries: 0,
			wantErr: statusIs(503, mockkp.CodeServiceUnavailable), wantCalls: 1},
		{name: "503 twice, client retries", fault: mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultStatus, Status: 503, Count: 2}, retries: 2,
			wantCalls: 3},
		{name: "429 on any op", fault: mockkp.Fault{Op: mockkp.AnyOp, Kind: mockkp.FaultStatus, Status: 429, Count: 1}, retries: 1,
			wantCalls: 2},
		{name: "dropped connection without retries", fault: mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultDrop}, retries: 0,
			wantErr: func(t *testing.T, err error) {
				var ue *kp.URLError
				if !errors.As(err, &ue) {
					t.Fatalf("error %T %v is not a *kp.URLError", err, err)
				}
			}, wantCalls: 1},
		{name: "dropped connection, client retries", fault: mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultDrop}, retries: 1, wantCalls: 2},
		{name: "latency", fault: mockkp.Fault{Op: "unwrap", Kind: mockkp.FaultLatency, Latency: mockkp.Duration(150 * time.Millisecond)},
			wantCalls: 1, minTime: 150 * time.Millisecond},
		{name: "fault on another op", fault: mockkp.Fault{Op: "wrap", Kind: mockkp.FaultStatus, Status: 500}, wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			withRetries(t, tc.retries)
			env := mockkptest.Start(t)
			c := env.Client(t, nil)
			plain := b64("faults")
			ct, err := c.Wrap(t.Context(), env.RootKeyID, plain, nil)
			if err != nil {
				t.Fatalf("Wrap: %v", err)
			}
			if err := env.Server.AddFault(tc.fault); err != nil {
				t.Fatalf("AddFault: %v", err)
			}
			start := time.Now()
			got, err := c.Unwrap(t.Context(), env.RootKeyID, ct, nil)
			elapsed := time.Since(start)
			if tc.wantErr != nil {
				tc.wantErr(t, err)
			} else if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("Unwrap: %v", err)
			}
			if n := env.Server.Requests(mockkp.OpUnwrap); n != tc.wantCalls {
				t.Fatalf("unwrap requests = %d, want %d", n, tc.wantCalls)
			}
			if elapsed < tc.minTime {
				t.Fatalf("Unwrap took %v, want at least %v", elapsed, tc.minTime)
			}
			if tc.fault.Op == "unwrap" && len(env.Server.Faults()) != 0 {
				t.Fatalf("faults still pending: %+v", env.Server.Faults())
			}
			// After the fault the operation works again.
			if _, err := c.Unwrap(t.Context(), env.RootKeyID, ct, nil); err != nil {
				t.Fatalf("Unwrap after the fault: %v", err)
			}
		})
	}
}

func statusIs(status int, code string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if s, c := kpStatus(t, err); s != status || c != code {
			t.Fatalf("got %d %s, want %d %s", s, c, status, code)
		}
	}
}

func TestTokenFault(t *testing.T) {
	oldMax, oldWait := iam.RetryMax, iam.RetryWaitMax
	iam.RetryMax, iam.RetryWaitMax = 0, time.Millisecond
	t.Cleanup(func() { iam.RetryMax, iam.RetryWaitMax = oldMax, oldWait })
	env := mockkptest.Start(t)
	if err := env.Server.AddFault(mockkp.Fault{Op: mockkp.OpToken, Kind: mockkp.FaultStatus, Status: 503}); err != nil {
		t.Fatalf("AddFault: %v", err)
	}
	_, err := env.Client(t, nil).GetKey(t.Context(), env.RootKeyID)
	var ie iam.Error
	if !errors.As(err, &ie) || ie.HTTPResponse.StatusCode != 503 {
		t.Fatalf("GetKey error = %v, want an iam.Error with 503", err)
	}
	if _, err := env.Client(t, nil).GetKey(t.Context(), env.RootKeyID); err != nil {
		t.Fatalf("GetKey after the fault: %v", err)
	}
}

// TestHTMLFault: an html fault answers with an HTML error page and the chosen status (and
// Retry-After) on the token endpoint and on Key Protect's, as a gateway in an outage does.
func TestHTMLFault(t *testing.T) {
	env := mockkptest.Start(t)
	for _, tc := range []struct {
		op, method, path string
		status           int
		retryAfter       time.Duration
		header           string
	}{
		{mockkp.OpToken, "POST", "/identity/token", 503, 0, ""},
		{mockkp.OpToken, "POST", "/oidc/token", 429, 1500 * time.Millisecond, "2"},
		{mockkp.OpGet, "GET", "/api/v2/keys/" + env.RootKeyID, 502, 0, ""},
	} {
		if err := env.Server.AddFault(mockkp.Fault{Op: tc.op, Kind: mockkp.FaultHTML, Status: tc.status, RetryAfter: mockkp.Duration(tc.retryAfter)}); err != nil {
			t.Fatalf("AddFault: %v", err)
		}
		req, err := http.NewRequestWithContext(t.Context(), tc.method, env.URL+tc.path, strings.NewReader("grant_type=x"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
			!strings.HasPrefix(string(body), "<!DOCTYPE html>") || resp.Header.Get("Retry-After") != tc.header {
			t.Errorf("%s: %d %q Retry-After %q body %.40q; want %d text/html page, Retry-After %q",
				tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Retry-After"), body, tc.status, tc.header)
		}
	}
	// The official client cannot decode the page: its token source returns a JSON error.
	oldMax := iam.RetryMax
	iam.RetryMax = 0
	t.Cleanup(func() { iam.RetryMax = oldMax })
	if err := env.Server.AddFault(mockkp.Fault{Op: mockkp.OpToken, Kind: mockkp.FaultHTML, Status: 503}); err != nil {
		t.Fatal(err)
	}
	_, err := env.Client(t, nil).GetKey(t.Context(), env.RootKeyID)
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		t.Errorf("GetKey through an HTML token page = %v, want the client's JSON syntax error", err)
	}
	for _, bad := range []mockkp.Fault{
		{Op: mockkp.OpToken, Kind: mockkp.FaultHTML, Status: 200},
		{Op: mockkp.OpToken, Kind: mockkp.FaultDrop, RetryAfter: mockkp.Duration(time.Second)},
	} {
		if err := env.Server.AddFault(bad); err == nil {
			t.Errorf("AddFault(%+v) accepted", bad)
		}
	}
}

func TestAdminAPI(t *testing.T) {
	env := mockkptest.Start(t)
	admin := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, env.AdminURL+path, strings.NewReader(body))
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("admin %s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, data
	}
	steps := []struct {
		name, method, path, body string
		status                   int
		contains                 string
	}{
		{"healthz", "GET", "/healthz", "", 200, "ok"},
		{"bad op", "POST", "/faults", `{"op":"explode","kind":"drop"}`, 400, "unknown op"},
		{"bad kind", "POST", "/faults", `{"op":"wrap","kind":"melt"}`, 400, "unknown kind"},
		{"bad status", "POST", "/faults", `{"op":"wrap","kind":"status","status":200}`, 400, "status must be"},
		{"bad latency", "POST", "/faults", `{"op":"wrap","kind":"latency","latency":"soon"}`, 400, "failed to decode"},
		{"add status fault", "POST", "/faults", `{"op":"get","kind":"status","status":503,"count":2}`, 201, `"status":503`},
		{"add latency fault", "POST", "/faults", `{"op":"wrap","kind":"latency","latency":"5ms"}`, 201, `"latency":"5ms"`},
		{"add html fault", "POST", "/faults", `{"op":"token","kind":"html","status":503,"retryAfter":"2s","count":0}`, 201, `"retryAfter":"2s"`},
		{"list faults", "GET", "/faults", "", 200, `"kind":"html"`},
		{"clear faults", "DELETE", "/faults", "", 204, ""},
		{"no faults", "GET", "/faults", "", 200, "[]"},
	}
	for _, st := range steps {
		status, body := admin(st.method, st.path, st.body)
		if status != st.status || !strings.Contains(string(body), st.contains) {
			t.Fatalf("%s: %d %s, want %d containing %q", st.name, status, body, st.status, st.contains)
		}
	}
	c := env.Client(t, nil)
	for range 3 {
		if _, err := c.GetKey(t.Context(), env.RootKeyID); err != nil {
			t.Fatalf("GetKey: %v", err)
		}
	}
	status, body := admin("GET", "/counters", "")
	var counters map[string]int64
	if status != 200 || json.Unmarshal(body, &counters) != nil {
		t.Fatalf("counters = %d %s", status, body)
	}
	if counters["get"] != 3 || counters["token"] != 1 || len(counters) != 2*len(mockkp.Ops()) {
		t.Fatalf("counters = %v, want get 3, token 1 and every op (requests and rate-limited)", counters)
	}
	if status, _ := admin("DELETE", "/counters", ""); status != 204 || env.Server.Requests("get") != 0 {
		t.Fatalf("reset counters: %d, get = %d", status, env.Server.Requests("get"))
	}
	// The admin API is not on the API listener.
	if res := raw(t, env, "GET", "/counters", "", nil); res.status != 404 {
		t.Fatalf("API listener served /counters: %d", res.status)
	}
}

func TestHealthz(t *testing.T) {
	env := mockkptest.Start(t)
	resp, err := http.Get(env.URL + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz = %d", resp.StatusCode)
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	env := mockkptest.Start(t, mockkptest.WithOptions(func(o *mockkp.Options) { o.Logger = logger }))
	c := env.Client(t, nil)
	plain := b64("top secret material")
	ct, err := c.Wrap(t.Context(), env.RootKeyID, plain, nil)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	if _, err := c.Unwrap(t.Context(), env.RootKeyID, ct, nil); err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	token := fetchToken(t, env, env.APIKey)
	logs := buf.String()
	if strings.Count(logs, `"msg":"request"`) < 4 || !strings.Contains(logs, `"op":"unwrap"`) {
		t.Fatalf("request logs missing: %s", logs)
	}
	if !strings.Contains(logs, `"host":"127.0.0.1:`) || !strings.Contains(logs, `"tls":false`) {
		t.Errorf("request logs do not say which host and listener were used: %s", logs)
	}
	for name, secret := range map[string]string{
		"api key": env.APIKey, "plaintext": string(plain), "ciphertext": string(ct),
		"token signature": token[strings.LastIndex(token, ".")+1:],
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the %s", name)
		}
	}
}

func TestPersistFailureIsReported(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	env := mockkptest.Start(t, mockkptest.WithOptions(func(o *mockkp.Options) { o.StatePath = filepath.Join(dir, "state.json") }))
	c := env.Client(t, nil)
	if _, err := c.CreateRootKey(t.Context(), "persisted", nil); err != nil {
		t.Fatalf("CreateRootKey: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	withRetries(t, 0)
	status, code := kpStatus(t, func() error { _, err := c.CreateRootKey(t.Context(), "not-persisted", nil); return err }())
	if status != 500 || code != mockkp.CodeInternal {
		t.Fatalf("create with a lost state dir = %d %s, want 500 %s", status, code, mockkp.CodeInternal)
	}
	keys, err := c.GetKeys(t.Context(), 0, 0)
	if err != nil {
		t.Fatalf("GetKeys: %v", err)
	}
	for _, k := range keys.Keys {
		if k.Name == "not-persisted" {
			t.Fatalf("a change that failed to persist stayed in memory")
		}
	}
	if len(keys.Keys) != 2 {
		t.Fatalf("GetKeys = %d keys, want the seeded and the persisted one", len(keys.Keys))
	}
}
