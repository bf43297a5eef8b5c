package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startRegistry runs Debian's docker-registry on a free loopback port (make deps installs it).
func startRegistry(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Process{Name: "registry", Path: "/usr/bin/docker-registry", Args: []string{"serve", filepath.Join(dir, "config.yml")},
		LogFile: filepath.Join(dir, "registry.log"), PidFile: filepath.Join(dir, "registry.pid"), StartTimeout: 20 * time.Second,
		Health: func(ctx context.Context) error { return httpOK(ctx, "http://"+addr+"/v2/") }}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return addr
}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func TestPushScratchImage(t *testing.T) {
	reg := startRegistry(t)
	src := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := ScratchImage{Files: []ImageFile{{Name: "/catatonit", Source: src, Mode: 0o755}}, Entrypoint: []string{"/catatonit", "-P"}}
	ctx := context.Background()
	d1, err := PushScratchImage(ctx, http.DefaultClient, reg, "keysync/pause", "3.10.1", img)
	if err != nil {
		t.Fatal(err)
	}
	// Pushing again is reproducible and skips known blobs.
	d2, err := PushScratchImage(ctx, http.DefaultClient, reg, "keysync/pause", "again", img)
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Fatalf("digests differ: %s vs %s", d1, d2)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+reg+"/v2/keysync/pause/manifests/3.10.1", nil)
	req.Header.Set("Accept", mediaTypeManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	man, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(man)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != d1 {
		t.Fatalf("served manifest digest %s, want %s", got, d1)
	}
	var m struct {
		Config struct{ Digest string }
		Layers []struct{ MediaType, Digest string }
	}
	if err := json.Unmarshal(man, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != mediaTypeLayer {
		t.Fatalf("layers = %+v", m.Layers)
	}
	resp, err = http.Get("http://" + reg + "/v2/keysync/pause/blobs/" + m.Config.Digest)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(cfg), `"Entrypoint":["/catatonit","-P"]`) {
		t.Fatalf("config = %s", cfg)
	}
}

func TestPushScratchImageErrors(t *testing.T) {
	tests := []struct {
		name     string
		registry string
		img      ScratchImage
		wantErr  string
	}{
		{name: "missing file", registry: "127.0.0.1:1", img: ScratchImage{Files: []ImageFile{{Name: "x", Source: "/nonexistent/x"}}},
			wantErr: "failed to read image file"},
		{name: "registry down", registry: "127.0.0.1:1", img: ScratchImage{}, wantErr: "failed to start blob upload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PushScratchImage(context.Background(), http.DefaultClient, tt.registry, "r", "t", tt.img)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
