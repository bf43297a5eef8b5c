package mockkp_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	kp "github.com/IBM/keyprotect-go-client"

	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func withClock(c *fakeClock) mockkptest.Option {
	return mockkptest.WithOptions(func(o *mockkp.Options) { o.Now = c.Now })
}

// fetchToken gets an access token from the mock IAM with apiKey.
func fetchToken(t *testing.T, env *mockkptest.Env, apiKey string) string {
	t.Helper()
	resp, err := http.PostForm(env.TokenURL, url.Values{
		"grant_type": {"urn:ibm:params:oauth:grant-type:apikey"}, "apikey": {apiKey},
	})
	if err != nil {
		t.Fatalf("failed to request token: %v", err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token status = %d, want 200", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("failed to decode token response: %v", err)
	}
	return tr.AccessToken
}

// rawResult is a raw HTTP answer with the envelope's first reason code.
type rawResult struct {
	status int
	code   string
	body   []byte
}

// raw sends a request with a valid token and instance unless hdr overrides them (an empty
// value removes the header).
func raw(t *testing.T, env *mockkptest.Env, method, path, body string, hdr map[string]string) rawResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, env.URL+path, rd)
	if err != nil {
		t.Fatalf("failed to build request: %v", err)
	}
	h := map[string]string{
		"authorization":    "Bearer " + fetchToken(t, env, env.APIKey),
		"bluemix-instance": env.InstanceID,
		"accept":           "application/json",
	}
	for k, v := range hdr {
		h[k] = v
	}
	for k, v := range h {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("failed to send request: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("failed to read response: %v", err)
	}
	return rawResult{status: resp.StatusCode, code: envelopeCode(data), body: data}
}

func envelopeCode(data []byte) string {
	var env struct {
		Metadata struct {
			CollectionType string `json:"collectionType"`
		} `json:"metadata"`
		Resources []struct {
			ErrorMsg string `json:"errorMsg"`
			Reasons  []struct {
				Code string `json:"code"`
			} `json:"reasons"`
		} `json:"resources"`
	}
	if json.Unmarshal(data, &env) != nil || env.Metadata.CollectionType != "application/vnd.ibm.kms.error+json" ||
		len(env.Resources) != 1 || len(env.Resources[0].Reasons) != 1 || env.Resources[0].ErrorMsg == "" {
		return ""
	}
	return env.Resources[0].Reasons[0].Code
}

// kpStatus extracts the status and first reason code of a client error.
func kpStatus(t *testing.T, err error) (int, string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a *kp.Error")
	}
	var e *kp.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not a *kp.Error", err, err)
	}
	code := ""
	if len(e.Reasons) > 0 {
		code = e.Reasons[0].Code
	}
	return e.StatusCode, code
}

// withRetries lowers the client's package-level retry settings for the test and restores
// them. Tests that use it must not run in parallel.
func withRetries(t testing.TB, max int) {
	t.Helper()
	oldMax, oldWait := kp.RetryMax, kp.RetryWaitMax
	kp.RetryMax, kp.RetryWaitMax = max, time.Millisecond
	t.Cleanup(func() { kp.RetryMax, kp.RetryWaitMax = oldMax, oldWait })
}
