package kmsplugin

import (
	"context"
	"fmt"
	"net/http"
	"sync"
)

// The official client retries connection errors, 429 and 5xx (but 501) up to its package-wide
// kp.RetryMax. MAX_RETRIES is per plug-in, so attemptLimiter counts the attempts of one call
// (the attempts in the request's context) and, once the last allowed attempt got a retryable
// outcome, cancels the call's context: the client stops retrying as soon as its context ends.

type attemptsKey struct{}

type attempts struct {
	max    int
	cancel context.CancelFunc

	mu        sync.Mutex
	n         int
	last      string
	exhausted bool
}

func (a *attempts) result() (int, string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n, a.last, a.exhausted
}

type attemptLimiter struct{ next http.RoundTripper }

func (l attemptLimiter) RoundTrip(req *http.Request) (*http.Response, error) {
	a, ok := req.Context().Value(attemptsKey{}).(*attempts)
	resp, err := l.next.RoundTrip(req)
	if !ok {
		return resp, err
	}
	retryable := err != nil || resp.StatusCode == http.StatusTooManyRequests ||
		(resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	if !retryable {
		return resp, err
	}
	if err != nil {
		// url.Error names the URL (never a body or the token).
		a.last = err.Error()
	} else {
		a.last = fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	if a.n >= a.max {
		a.exhausted = true
		a.cancel()
	}
	return resp, err
}
