package kpkey

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TokenSource fetches IAM access tokens for an API key: one attempt per call, bounded by the
// context, through the given HTTP client, cached until a minute before expiry. Unlike the
// official client's token source it honours the context, never retries on its own (the caller
// owns the backoff) and reports every failure as a *TokenError that says what IAM answered,
// including a Retry-After, without quoting the answer's body.
type TokenSource struct {
	URL    string
	APIKey string
	Client *http.Client

	mu  sync.Mutex
	tok string
	exp time.Time
}

// TokenError is a failed token request. Status is 0 when no HTTP answer came (connection
// failure, timeout).
type TokenError struct {
	Status int
	// Code is IAM's errorCode when the answer was IAM's JSON error body (e.g. BXNIM0415E: the
	// API key is not known); empty for anything else, such as a gateway's HTML page.
	Code string
	// What describes the answer in a few words ("HTML page", "JSON error", ...).
	What string
	// After is the answer's Retry-After (0 when absent).
	After time.Duration
	Err   error
}

func (e *TokenError) Error() string {
	var b strings.Builder
	b.WriteString("IAM token request failed")
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.What != "" {
		b.WriteString(" (" + e.What + ")")
	}
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.After > 0 {
		fmt.Fprintf(&b, ", Retry-After %s", e.After)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *TokenError) Unwrap() error { return e.Err }

// RetryAfter is the Retry-After IAM sent (0 when none).
func (e *TokenError) RetryAfter() time.Duration { return e.After }

// maxTokenBody bounds what is read of a token answer.
const maxTokenBody = 1 << 20

// Token returns a valid access token ("Bearer ..." is the caller's to add).
func (ts *TokenSource) Token(ctx context.Context) (string, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.tok != "" && time.Now().Before(ts.exp) {
		return ts.tok, nil
	}
	form := url.Values{"grant_type": {"urn:ibm:params:oauth:grant-type:apikey"}, "apikey": {ts.APIKey}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", &TokenError{Err: fmt.Errorf("failed to build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	client := ts.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// url.Error quotes the URL, never the form (which holds the API key).
		return "", &TokenError{What: "no answer", Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	if err != nil {
		return "", &TokenError{Status: resp.StatusCode, What: "answer cut short", Err: err}
	}
	isJSON := false
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil {
		isJSON = mt == "application/json" || strings.HasSuffix(mt, "+json")
	}
	if resp.StatusCode != http.StatusOK {
		te := &TokenError{Status: resp.StatusCode, After: ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
		var ie struct {
			ErrorCode string `json:"errorCode"`
		}
		switch {
		case json.Unmarshal(body, &ie) == nil && ie.ErrorCode != "":
			te.What, te.Code = "JSON error", ie.ErrorCode
		case isJSON:
			te.What = "JSON without an IAM errorCode"
		default:
			te.What = describeBody(resp.Header.Get("Content-Type"), body)
		}
		return "", te
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return "", &TokenError{Status: resp.StatusCode, What: "200 without a token: " + describeBody(resp.Header.Get("Content-Type"), body)}
	}
	ts.tok = tr.AccessToken
	ts.exp = time.Now().Add(time.Duration(tr.ExpiresIn-60) * time.Second)
	return ts.tok, nil
}

// describeBody names what kind of body came, never its content.
func describeBody(contentType string, body []byte) string {
	trimmed := strings.ToLower(strings.TrimSpace(string(body[:min(len(body), 64)])))
	switch {
	case len(body) == 0:
		return "empty body"
	case strings.HasPrefix(trimmed, "<!doctype html") || strings.HasPrefix(trimmed, "<html") || strings.Contains(contentType, "html"):
		return "HTML page"
	case contentType != "":
		return "not JSON: " + contentType
	}
	return "not JSON"
}

// ParseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date. Missing, invalid
// or past values give 0.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}
