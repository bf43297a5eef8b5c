package lab

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheckHTTP(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
		case "/auth":
			if r.Header.Get("Authorization") != "Bearer s3cret" {
				w.WriteHeader(http.StatusUnauthorized)
			}
		case "/readyz":
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n")
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	bearer := &http.Client{Transport: &BearerTransport{Token: "s3cret"}}
	tests := []struct {
		name    string
		client  *http.Client
		url     string
		wantErr string
	}{
		{name: "200", url: srv.URL + "/ok"},
		{name: "503", url: srv.URL + "/down", wantErr: "503 Service Unavailable"},
		{name: "500 with a reason in the body", url: srv.URL + "/readyz", wantErr: "500 Internal Server Error: [+]ping ok\n[-]etcd failed"},
		{name: "token required, none sent", url: srv.URL + "/auth", wantErr: "401"},
		{name: "token sent by BearerTransport", client: bearer, url: srv.URL + "/auth"},
		{name: "connection refused", url: closed.URL + "/ok", wantErr: "refused"},
		{name: "bad URL", url: "http://[::1", wantErr: "failed to build request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckHTTP(context.Background(), tt.client, tt.url)
			if err := HTTPHealth(tt.client, tt.url)(context.Background()); (err == nil) != (tt.wantErr == "") {
				t.Errorf("HTTPHealth and CheckHTTP disagree: %v", err)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestWaitHTTP(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// "/" is ready from the third call on, "/never" never.
		if r.URL.Path == "/never" || calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	if err := WaitHTTP(context.Background(), nil, srv.URL, 5*time.Second); err != nil {
		t.Fatalf("WaitHTTP on a server that becomes ready: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("server called %d times, want 3", n)
	}
	start := time.Now()
	err := WaitHTTP(context.Background(), nil, srv.URL+"/never", 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "within 300ms") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v, want a timeout naming the last status", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("WaitHTTP took %v for a 300ms timeout", d)
	}
}
