// Package kp wraps keys with (mock) Key Protect for kp-key Secrets, through the official client
// (internal/kpkey), and reads mockkp's admin request counters.
package kp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/keysync-dev/keysync/internal/kpkey"
)

// Wrap wraps pemData under rootKeyID with the Key Protect instance cfg describes and returns
// the ciphertext for a kp-key Secret.
func Wrap(ctx context.Context, cfg kpkey.Config, rootKeyID string, pemData []byte) (string, error) {
	client, err := kpkey.NewClient(cfg, nil)
	if err != nil {
		return "", err
	}
	return kpkey.Wrap(ctx, client, rootKeyID, pemData)
}

// Counters reads mockkp's per-operation request counters (GET <adminURL>/counters, a JSON
// object {"unwrap": n, ...}).
func Counters(ctx context.Context, hc *http.Client, adminURL string) (map[string]int64, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(adminURL, "/")+"/counters", nil)
	if err != nil {
		return nil, fmt.Errorf("failed to build counters request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("failed to read mockkp counters: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("failed to read mockkp counters: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("failed to read mockkp counters: HTTP %d", resp.StatusCode)
	}
	var counts map[string]int64
	if err := json.Unmarshal(body, &counts); err != nil {
		return nil, fmt.Errorf("failed to decode mockkp counters: %w", err)
	}
	return counts, nil
}

// Rotate rotates the root key rootKeyID in the Key Protect instance cfg describes (a new
// version; wraps use it from now on, unwraps of older ciphertexts keep working).
func Rotate(ctx context.Context, cfg kpkey.Config, rootKeyID string) error {
	client, err := kpkey.NewClient(cfg, nil)
	if err != nil {
		return err
	}
	if err := client.Rotate(ctx, rootKeyID, ""); err != nil {
		return fmt.Errorf("failed to rotate root key %s: %w", rootKeyID, err)
	}
	return nil
}
