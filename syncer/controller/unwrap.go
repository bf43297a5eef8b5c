package controller

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	kp "github.com/IBM/keyprotect-go-client"
	"github.com/keysync-dev/keysync/internal/kpkey"
)

// Unwrapper unwraps a kp-key ciphertext into the PEM it wraps.
type Unwrapper interface {
	Unwrap(ctx context.Context, rootKeyID, ciphertext string) ([]byte, error)
}

// UnwrapperFactory builds an Unwrapper from a valid keyprotect-config.
type UnwrapperFactory func(kpkey.Config) (Unwrapper, error)

// KeyProtect is the default factory: the official Key Protect client (kpkey.NewClient) with
// kpkey.Unwrap's convention (the plaintext is base64 of the PEM). IAM tokens come from
// kpkey.TokenSource through the same transport (nil: kp.DefaultTransport()), so that every
// answer of IAM, HTML error pages included, is classified, and a Retry-After of IAM or Key
// Protect reaches the retry policy (see RetryAfter).
func KeyProtect(transport http.RoundTripper) UnwrapperFactory {
	return func(c kpkey.Config) (Unwrapper, error) {
		if transport == nil {
			transport = kp.DefaultTransport()
		}
		rec := retryAfterRecorder{next: transport}
		client, err := kpkey.NewClient(c, rec)
		if err != nil {
			return nil, err
		}
		ts := &kpkey.TokenSource{URL: c.TokenEndpoint(), APIKey: c.APIKey, Client: &http.Client{Transport: transport}}
		return kpUnwrapper{c: client, ts: ts}, nil
	}
}

type kpUnwrapper struct {
	c  *kp.Client
	ts *kpkey.TokenSource
}

// Unwrap fetches a token (bounded by ctx) and runs the official client's unwrap with it. A
// Retry-After that Key Protect sent during the attempt is attached to the error.
func (u kpUnwrapper) Unwrap(ctx context.Context, rootKeyID, ciphertext string) ([]byte, error) {
	tok, err := u.ts.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to unwrap with root key %s: %w", rootKeyID, err)
	}
	hint := &retryHint{}
	ctx = context.WithValue(kp.NewContextWithAuth(ctx, "Bearer "+tok), retryHintKey{}, hint)
	pem, err := kpkey.Unwrap(ctx, u.c, rootKeyID, ciphertext)
	if err != nil {
		if d := hint.get(); d > 0 {
			return nil, &retryAfterError{err: err, after: d}
		}
		return nil, err
	}
	return pem, nil
}

// retryAfterRecorder notes the Retry-After of Key Protect's 429 and 503 answers in the
// request context's retryHint (the official client's errors do not carry headers).
type retryAfterRecorder struct{ next http.RoundTripper }

type retryHintKey struct{}

type retryHint struct {
	mu    sync.Mutex
	after time.Duration
}

func (h *retryHint) get() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.after
}

func (r retryAfterRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if h, ok := req.Context().Value(retryHintKey{}).(*retryHint); ok {
			h.mu.Lock()
			h.after = kpkey.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			h.mu.Unlock()
		}
	}
	return resp, err
}

type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("%v (Retry-After %s)", e.err, e.after)
}
func (e *retryAfterError) Unwrap() error             { return e.err }
func (e *retryAfterError) RetryAfter() time.Duration { return e.after }
