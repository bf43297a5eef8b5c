package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The one HTTP readiness check of every lab: CheckHTTP is one probe, HTTPHealth the same as a
// Process health check, WaitHTTP polls it until it passes.

// httpPoll is WaitHTTP's poll period.
const httpPoll = 200 * time.Millisecond

// CheckHTTP sends one GET to url and returns nil when it answers 200 OK; otherwise the error
// names the status and the body's last lines. A nil client means http.DefaultClient; the
// request is bounded by ctx (and the client's own timeout).
func CheckHTTP(ctx context.Context, client *http.Client, url string) error {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("failed to build request for %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The body's end says why (kube-apiserver's /readyz lists the failing checks last).
		if tail := LastLines(bytes.TrimSpace(body), 5); tail != "" {
			return fmt.Errorf("GET %s: %s: %s", url, resp.Status, tail)
		}
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// HTTPHealth is a HealthCheck that passes when url answers 200 OK (CheckHTTP).
func HTTPHealth(client *http.Client, url string) HealthCheck {
	return func(ctx context.Context) error { return CheckHTTP(ctx, client, url) }
}

// WaitHTTP polls url (CheckHTTP) until it answers 200 OK, ctx ends or timeout passes; the
// error then carries the last check's failure.
func WaitHTTP(ctx context.Context, client *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(httpPoll)
	defer tick.Stop()
	for {
		err := CheckHTTP(ctx, client, url)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("failed to reach %s within %s: %w", url, timeout, err)
		case <-tick.C:
		}
	}
}

// BearerTransport adds "Authorization: Bearer <Token>" to every request it sends through Base
// (nil means http.DefaultTransport); for health checks of endpoints that need a token.
type BearerTransport struct {
	Token string
	Base  http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (b *BearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := b.Base
	if base == nil {
		base = http.DefaultTransport
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.Token)
	return base.RoundTrip(req)
}
