package kp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Fault is one fault of mockkp's admin API (POST <adminURL>/faults): the next Count requests
// of Op ("unwrap", "token", ..., or "*"), or every request for For, get Kind ("status",
// "html", "drop", "latency"). Durations are Go duration strings ("1s").
type Fault struct {
	Op         string `json:"op"`
	Kind       string `json:"kind"`
	Status     int    `json:"status,omitempty"`
	Latency    string `json:"latency,omitempty"`
	RetryAfter string `json:"retryAfter,omitempty"`
	Count      int    `json:"count,omitempty"`
	For        string `json:"for,omitempty"`
}

// String describes f for messages.
func (f Fault) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", f.Op, f.Kind)
	if f.Status != 0 {
		fmt.Fprintf(&b, " %d", f.Status)
	}
	if f.Latency != "" {
		fmt.Fprintf(&b, " %s", f.Latency)
	}
	if f.RetryAfter != "" {
		fmt.Fprintf(&b, " Retry-After %s", f.RetryAfter)
	}
	if f.Count > 1 {
		fmt.Fprintf(&b, " ×%d", f.Count)
	}
	if f.For != "" {
		fmt.Fprintf(&b, " for %s", f.For)
	}
	return b.String()
}

// AddFault queues f on mockkp.
func AddFault(ctx context.Context, hc *http.Client, adminURL string, f Fault) error {
	body, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("failed to encode fault: %w", err)
	}
	_, err = admin(ctx, hc, http.MethodPost, adminURL, body, http.StatusCreated)
	if err != nil {
		return fmt.Errorf("failed to add mockkp fault (%s): %w", f, err)
	}
	return nil
}

// ClearFaults drops every pending fault.
func ClearFaults(ctx context.Context, hc *http.Client, adminURL string) error {
	if _, err := admin(ctx, hc, http.MethodDelete, adminURL, nil, http.StatusNoContent); err != nil {
		return fmt.Errorf("failed to clear mockkp faults: %w", err)
	}
	return nil
}

// PendingFaults lists the faults still queued, with their remaining counts.
func PendingFaults(ctx context.Context, hc *http.Client, adminURL string) ([]Fault, error) {
	body, err := admin(ctx, hc, http.MethodGet, adminURL, nil, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("failed to list mockkp faults: %w", err)
	}
	var fs []Fault
	if err := json.Unmarshal(body, &fs); err != nil {
		return nil, fmt.Errorf("failed to decode mockkp faults: %w", err)
	}
	return fs, nil
}

func admin(ctx context.Context, hc *http.Client, method, adminURL string, body []byte, want int) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(adminURL, "/")+"/faults", r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return data, nil
}
