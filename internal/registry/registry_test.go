package registry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestStartServesAndStops(t *testing.T) {
	ctx := context.Background()
	r, err := Start(ctx, Options{})
	if err != nil {
		t.Fatalf("Start: %v (install the registry with `make deps`)", err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	if !strings.HasPrefix(r.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr = %q, want loopback", r.Addr())
	}
	resp, err := http.Get(r.URL() + "/v2/")
	if err != nil {
		t.Fatalf("GET /v2/: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
		t.Fatalf("API version header = %q, want registry/2.0", got)
	}
	dir := r.Dir()
	if err := r.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := r.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary dir %s still there after Stop: %v", dir, err)
	}
	if _, err := http.Get(r.URL() + "/v2/"); err == nil {
		t.Fatal("registry still answers after Stop")
	}
}

func TestStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name    string
		opts    Options
		wantIs  error
		wantMsg string
	}{
		{name: "missing binary", opts: Options{Binary: "/nonexistent/docker-registry"}, wantIs: ErrBinaryMissing, wantMsg: "make deps"},
		{name: "address in use", opts: Options{Addr: busy.Addr().String()}, wantMsg: "address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Start(context.Background(), tt.opts)
			if err == nil {
				_ = r.Stop()
				t.Fatal("Start succeeded, want error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("error %v, want errors.Is %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestGivenDirIsKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "reg")
	r, err := Start(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := r.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.yml")); err != nil {
		t.Fatalf("given dir not kept: %v", err)
	}
}

func TestHtpasswdRequiresCredentials(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("tester:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Start(context.Background(), Options{Htpasswd: htpasswd})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	tests := []struct {
		name       string
		user, pass string
		want       int
	}{
		{"anonymous", "", "", http.StatusUnauthorized},
		{"wrong password", "tester", "nope", http.StatusUnauthorized},
		{"right password", "tester", "s3cret", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, r.URL()+"/v2/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.user != "" {
				req.SetBasicAuth(tt.user, tt.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("GET /v2/ = %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}
