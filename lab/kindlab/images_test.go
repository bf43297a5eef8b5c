package kindlab

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/internal/registryauth"
	"github.com/keysync-dev/keysync/lab"
)

// TestRegistryImageContents checks the registry image's files without a Docker daemon.
func TestRegistryImageContents(t *testing.T) {
	img, err := RegistryImage()
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 1 || strings.Join(img.Entrypoint, " ") != "/usr/bin/docker-registry serve /etc/docker/registry/config.yml" {
		t.Fatalf("image = %+v", img)
	}
	type entry struct {
		dir  bool
		mode int64
		data string
	}
	got := map[string]entry{}
	tr := tar.NewReader(bytes.NewReader(img.Layers[0].Tar()))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got[hdr.Name] = entry{dir: hdr.Typeflag == tar.TypeDir, mode: hdr.Mode, data: string(data)}
	}
	tests := []struct {
		path string
		dir  bool
		mode int64
	}{
		{"usr/bin/docker-registry", false, hostMode(t, "/usr/bin/docker-registry")},
		{"lib/x86_64-linux-gnu/libc.so.6", false, hostMode(t, "/lib/x86_64-linux-gnu/libc.so.6")},
		{"lib64/ld-linux-x86-64.so.2", false, hostMode(t, "/lib64/ld-linux-x86-64.so.2")},
		{"etc/docker/registry/config.yml", false, 0o644},
		{"etc/docker/registry/", true, 0o755},
		{"var/lib/registry/", true, 0o755},
	}
	for _, tt := range tests {
		e, ok := got[tt.path]
		if !ok || e.dir != tt.dir || e.mode != tt.mode {
			t.Errorf("%s = %+v (present %v), want dir %v mode %o", tt.path, e, ok, tt.dir, tt.mode)
		}
	}
	if got["etc/docker/registry/config.yml"].data != registryConfig {
		t.Error("config.yml is not registryConfig")
	}
}

func hostMode(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int64(st.Mode().Perm())
}

// TestRegistryImage loads the lab registry image FROM scratch and starts it as the lab does
// (testcontainers-go, no reaper, no pull): it serves the registry API on its fixed loopback
// port, carries the lab label, and a second start reuses the container, also after it was
// stopped (needs a Docker daemon: hack/prepare-docker.sh).
func TestRegistryImage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := RegistryImage()
	if err != nil {
		t.Fatal(err)
	}
	tag, _, err := img.EnsureDocker(ctx, RegistryRepo)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	name := "keysync-registry-test-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	docker(ctx, nil, "rm", "-f", name)
	docker(ctx, nil, "network", "rm", name)
	if _, err := docker(ctx, nil, "network", "create", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		docker(context.Background(), nil, "rm", "-f", "-v", name)
		docker(context.Background(), nil, "network", "rm", name)
	})
	authDir := t.TempDir()
	creds := registryauth.Credentials{Username: registryauth.Username, Password: "test-password"}
	hp, err := registryauth.Htpasswd(creds)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(authDir, "htpasswd"), hp, 0o644); err != nil {
		t.Fatal(err)
	}
	svc := service{Name: name, Image: tag, Network: name, Ports: map[string]string{"5000/tcp": addr}, Ready: "/v2/",
		Binds: []string{authDir + ":/auth:ro"}}
	logger := slog.New(slog.DiscardHandler)
	if err := svc.start(ctx, logger); err != nil {
		t.Fatal(err)
	}
	first, err := docker(ctx, nil, "inspect", "-f", "{{.Id}} {{index .Config.Labels \""+LabelLab+"\"}}", name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(first, " "+DefaultName) {
		t.Fatalf("container %s: id and lab label = %q, want the label %s=%s", name, first, LabelLab, DefaultName)
	}
	// The registry requires the credentials: 401 without them, 200 with them.
	if err := lab.CheckHTTP(ctx, nil, "http://"+addr+"/v2/"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("GET /v2/ without credentials: %v, want 401", err)
	}
	client := registryauth.Same([]string{addr}, creds).Client(nil)
	if err := lab.WaitHTTP(ctx, client, "http://"+addr+"/v2/", 30*time.Second); err != nil {
		logs, _ := docker(ctx, nil, "logs", name)
		t.Fatalf("%v; logs: %s", err, logs)
	}
	if _, err := docker(ctx, nil, "stop", name); err != nil {
		t.Fatal(err)
	}
	if err := svc.start(ctx, logger); err != nil {
		t.Fatalf("second start (reuse of a stopped container): %v", err)
	}
	second, err := docker(ctx, nil, "inspect", "-f", "{{.Id}} {{index .Config.Labels \""+LabelLab+"\"}}", name)
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Fatalf("second start made a new container: %q, first was %q", second, first)
	}
	if err := lab.WaitHTTP(ctx, client, "http://"+addr+"/v2/", 30*time.Second); err != nil {
		t.Fatalf("registry does not serve after the restart: %v", err)
	}
}
