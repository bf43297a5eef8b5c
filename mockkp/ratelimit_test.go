package mockkp_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

func TestParseRateLimit(t *testing.T) {
	tests := []struct {
		in      string
		want    mockkp.RateLimit
		wantErr string
	}{
		{in: "unwrap=100", want: mockkp.RateLimit{Op: "unwrap", Rate: 100}},
		{in: "unwrap=0.5:3", want: mockkp.RateLimit{Op: "unwrap", Rate: 0.5, Burst: 3}},
		{in: " token=10 ", want: mockkp.RateLimit{Op: "token", Rate: 10}},
		{in: "unwrap", wantErr: "want OP=RATE"},
		{in: "explode=1", wantErr: "unknown op"},
		{in: "*=1", wantErr: "unknown op"},
		{in: "unwrap=fast", wantErr: "not a number"},
		{in: "unwrap=0", wantErr: "rate must be above 0"},
		{in: "unwrap=-1", wantErr: "rate must be above 0"},
		{in: "unwrap=NaN", wantErr: "rate must be above 0"},
		{in: "unwrap=1e9", wantErr: "rate must be above 0"},
		{in: "unwrap=10:0", wantErr: "burst"},
		{in: "unwrap=10:x", wantErr: "burst"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := mockkp.ParseRateLimit(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseRateLimit(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseRateLimit(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestRateLimitOfficialClient: the official client gets 429 TOO_MANY_REQUESTS_ERR beyond the
// limit, the bucket refills by the server's clock, and the 429s are counted.
func TestRateLimitOfficialClient(t *testing.T) {
	withRetries(t, 0)
	clock := newFakeClock()
	env := mockkptest.Start(t, withClock(clock), mockkptest.WithOptions(func(o *mockkp.Options) {
		o.RateLimits = []mockkp.RateLimit{{Op: mockkp.OpUnwrap, Rate: 2, Burst: 3}}
	}))
	c := env.Client(t, nil)
	plain := b64("rate limited")
	ct, err := c.Wrap(t.Context(), env.RootKeyID, plain, nil)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	steps := []struct {
		name    string
		advance time.Duration
		want429 bool
	}{
		{"burst 1", 0, false},
		{"burst 2", 0, false},
		{"burst 3", 0, false},
		{"bucket empty", 0, true},
		{"still empty after 0.4s", 400 * time.Millisecond, true},
		{"one token after 0.5s", 100 * time.Millisecond, false},
		{"empty again", 0, true},
		{"refilled to the burst only", 10 * time.Second, false},
		{"second of the burst", 0, false},
		{"third of the burst", 0, false},
		{"no fourth", 0, true},
	}
	want429 := int64(0)
	for i, st := range steps {
		clock.Advance(st.advance)
		got, err := c.Unwrap(t.Context(), env.RootKeyID, ct, nil)
		if st.want429 {
			want429++
			if s, code := kpStatus(t, err); s != http.StatusTooManyRequests || code != mockkp.CodeTooManyRequests {
				t.Fatalf("%s: got %d %s, want 429 %s", st.name, s, code, mockkp.CodeTooManyRequests)
			}
		} else if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%s: Unwrap: %v", st.name, err)
		}
		if n := env.Server.Requests(mockkp.OpUnwrap); n != int64(i+1) {
			t.Fatalf("%s: unwrap requests = %d, want %d (429s included)", st.name, n, i+1)
		}
		if n := env.Server.Requests(mockkp.RateLimitedCounter(mockkp.OpUnwrap)); n != want429 {
			t.Fatalf("%s: rate-limited unwraps = %d, want %d", st.name, n, want429)
		}
	}
	// Other operations are not limited.
	for range 5 {
		if _, err := c.Wrap(t.Context(), env.RootKeyID, plain, nil); err != nil {
			t.Fatalf("Wrap under an unwrap limit: %v", err)
		}
	}
}

// TestRateLimitRetryAfter: the 429 carries Retry-After (whole seconds until the next token, at
// least 1, or the configured value) and the official client, allowed one retry, waits for it
// and succeeds.
func TestRateLimitRetryAfter(t *testing.T) {
	tests := []struct {
		name      string
		limit     mockkp.RateLimit
		wantAfter string
	}{
		{"next token in 1s", mockkp.RateLimit{Op: mockkp.OpUnwrap, Rate: 1, Burst: 1}, "1"},
		{"next token in 10ms rounds up to 1s", mockkp.RateLimit{Op: mockkp.OpUnwrap, Rate: 100, Burst: 1}, "1"},
		{"next token in 2.5s rounds up to 3s", mockkp.RateLimit{Op: mockkp.OpUnwrap, Rate: 0.4, Burst: 1}, "3"},
		{"fixed Retry-After", mockkp.RateLimit{Op: mockkp.OpUnwrap, Rate: 100, Burst: 1, RetryAfter: mockkp.Duration(1500 * time.Millisecond)}, "2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			env := mockkptest.Start(t, withClock(clock))
			ct := string(env.Ciphertext(t, []byte("pem")))
			if err := env.Server.SetRateLimit(tc.limit); err != nil {
				t.Fatalf("SetRateLimit: %v", err)
			}
			body := `{"ciphertext":"` + ct + `"}`
			path := "/api/v2/keys/" + env.RootKeyID + "/actions/unwrap"
			if res := raw(t, env, "POST", path, body, nil); res.status != http.StatusOK {
				t.Fatalf("first unwrap = %d, want 200", res.status)
			}
			resp := rawResp(t, env, path, body)
			if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != tc.wantAfter {
				t.Fatalf("second unwrap = %d Retry-After %q, want 429 Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"), tc.wantAfter)
			}
			if code := envelopeCode(resp.body); code != mockkp.CodeTooManyRequests {
				t.Fatalf("429 body code = %q, want %s in the service's error envelope", code, mockkp.CodeTooManyRequests)
			}
		})
	}

	t.Run("official client waits Retry-After", func(t *testing.T) {
		withRetries(t, 1) // RetryWaitMax 1ms: only Retry-After can make the client wait 1s
		env := mockkptest.Start(t, mockkptest.WithOptions(func(o *mockkp.Options) {
			o.RateLimits = []mockkp.RateLimit{{Op: mockkp.OpUnwrap, Rate: 1, Burst: 1}}
		}))
		c := env.Client(t, nil)
		plain := b64("waits")
		ct, err := c.Wrap(t.Context(), env.RootKeyID, plain, nil)
		if err != nil {
			t.Fatalf("Wrap: %v", err)
		}
		if _, err := c.Unwrap(t.Context(), env.RootKeyID, ct, nil); err != nil {
			t.Fatalf("first Unwrap: %v", err)
		}
		start := time.Now()
		got, err := c.Unwrap(t.Context(), env.RootKeyID, ct, nil)
		elapsed := time.Since(start)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("second Unwrap (one retry allowed): %v", err)
		}
		if elapsed < 900*time.Millisecond {
			t.Fatalf("second Unwrap took %v: the client did not wait for Retry-After 1", elapsed)
		}
		if n := env.Server.Requests(mockkp.RateLimitedCounter(mockkp.OpUnwrap)); n != 1 {
			t.Fatalf("rate-limited unwraps = %d, want 1", n)
		}
	})
}

// TestRateLimitPerInstanceAndToken: each instance has its own bucket; the token endpoint
// answers its 429 with the IAM error body.
func TestRateLimitPerInstanceAndToken(t *testing.T) {
	const other = "99999999-2222-4333-8444-555555555555"
	env := mockkptest.Start(t, mockkptest.WithOptions(func(o *mockkp.Options) {
		o.Seed.Instances = append(o.Seed.Instances, mockkp.SeedInstance{ID: other, APIKeys: []string{mockkptest.APIKey}})
		o.Now = newFakeClock().Now
	}))
	token := fetchToken(t, env, env.APIKey)
	if err := env.Server.SetRateLimit(mockkp.RateLimit{Op: mockkp.OpList, Rate: 1, Burst: 1}); err != nil {
		t.Fatal(err)
	}
	hdr := func(inst string) map[string]string {
		return map[string]string{"authorization": "Bearer " + token, "bluemix-instance": inst}
	}
	steps := []struct {
		inst string
		want int
	}{
		{env.InstanceID, 200}, {env.InstanceID, 429}, {other, 200}, {other, 429}, {env.InstanceID, 429},
	}
	for i, st := range steps {
		if res := raw(t, env, "GET", "/api/v2/keys", "", hdr(st.inst)); res.status != st.want {
			t.Fatalf("step %d: list on instance %s = %d, want %d", i, st.inst, res.status, st.want)
		}
	}

	if err := env.Server.SetRateLimit(mockkp.RateLimit{Op: mockkp.OpToken, Rate: 1, Burst: 1}); err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"urn:ibm:params:oauth:grant-type:apikey"}, "apikey": {env.APIKey}}
	for i, want := range []int{200, 429} {
		resp, err := http.PostForm(env.TokenURL, form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var ie struct {
			ErrorCode string `json:"errorCode"`
		}
		if resp.StatusCode != want {
			t.Fatalf("token %d = %d, want %d", i, resp.StatusCode, want)
		}
		if want == 429 && (resp.Header.Get("Retry-After") != "1" || json.Unmarshal(body, &ie) != nil || ie.ErrorCode == "") {
			t.Fatalf("token 429: Retry-After %q, body %s; want 1 and an IAM error body", resp.Header.Get("Retry-After"), body)
		}
	}
	if n := env.Server.Requests(mockkp.RateLimitedCounter(mockkp.OpToken)); n != 1 {
		t.Fatalf("rate-limited tokens = %d, want 1", n)
	}
}

func TestRateLimitAdminAPI(t *testing.T) {
	env := mockkptest.Start(t)
	steps := []struct {
		name, method, path, body string
		status                   int
		contains                 string
	}{
		{"none", "GET", "/ratelimits", "", 200, "[]"},
		{"bad op", "POST", "/ratelimits", `{"op":"explode","rate":1}`, 400, "unknown op"},
		{"bad rate", "POST", "/ratelimits", `{"op":"unwrap","rate":-1}`, 400, "rate must be"},
		{"bad burst", "POST", "/ratelimits", `{"op":"unwrap","rate":1,"burst":-1}`, 400, "burst must be"},
		{"bad retryAfter", "POST", "/ratelimits", `{"op":"unwrap","rate":1,"retryAfter":"2h"}`, 400, "retryAfter must be"},
		{"unknown field", "POST", "/ratelimits", `{"op":"unwrap","rate":1,"qps":2}`, 400, "failed to decode"},
		{"set unwrap", "POST", "/ratelimits", `{"op":"unwrap","rate":1,"burst":1}`, 201, `"rate":1`},
		{"set get", "POST", "/ratelimits", `{"op":"get","rate":50,"retryAfter":"2s"}`, 201, `"retryAfter":"2s"`},
		{"list", "GET", "/ratelimits", "", 200, `[{"op":"get","rate":50,"retryAfter":"2s"},{"op":"unwrap","rate":1,"burst":1}]`},
		{"remove get", "POST", "/ratelimits", `{"op":"get"}`, 204, ""},
		{"list after remove", "GET", "/ratelimits", "", 200, `[{"op":"unwrap","rate":1,"burst":1}]`},
	}
	for _, st := range steps {
		status, body := adminCall(t, env, st.method, st.path, st.body)
		if status != st.status || !strings.Contains(string(body), st.contains) {
			t.Fatalf("%s: %d %s, want %d containing %q", st.name, status, body, st.status, st.contains)
		}
	}
	c := env.Client(t, nil)
	withRetries(t, 0)
	ct, err := c.Wrap(t.Context(), env.RootKeyID, b64("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, _ = c.Unwrap(t.Context(), env.RootKeyID, ct, nil)
	}
	status, body := adminCall(t, env, "GET", "/counters", "")
	var counters map[string]int64
	if status != 200 || json.Unmarshal(body, &counters) != nil {
		t.Fatalf("counters = %d %s", status, body)
	}
	if counters["unwrap"] != 3 || counters["ratelimited.unwrap"] != 2 || counters["ratelimited.get"] != 0 {
		t.Fatalf("counters = %v, want unwrap 3 and ratelimited.unwrap 2", counters)
	}
	if status, _ := adminCall(t, env, "DELETE", "/ratelimits", ""); status != 204 || len(env.Server.RateLimits()) != 0 {
		t.Fatalf("DELETE /ratelimits = %d, limits left %v", status, env.Server.RateLimits())
	}
	if _, err := c.Unwrap(t.Context(), env.RootKeyID, ct, nil); err != nil {
		t.Fatalf("Unwrap after removing the limit: %v", err)
	}
	if status, _ := adminCall(t, env, "DELETE", "/counters", ""); status != 204 || env.Server.Requests("ratelimited.unwrap") != 0 {
		t.Fatalf("DELETE /counters did not reset the rate-limited counters")
	}
}

// adminCall sends a request to the admin API.
func adminCall(t *testing.T, env *mockkptest.Env, method, path, body string) (int, []byte) {
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

type respWithBody struct {
	*http.Response
	body []byte
}

// rawResp POSTs body to path with a valid token and instance and returns the whole answer.
func rawResp(t *testing.T, env *mockkptest.Env, path, body string) respWithBody {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, env.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("authorization", "Bearer "+fetchToken(t, env, env.APIKey))
	req.Header.Set("bluemix-instance", env.InstanceID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return respWithBody{resp, data}
}
