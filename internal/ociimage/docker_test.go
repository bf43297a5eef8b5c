package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestDockerTag(t *testing.T) {
	l, err := NewLayer(File("/x", 0o755, []byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	img := Image{Layers: []*Layer{l}, Entrypoint: []string{"/x"}}
	_, cfg, _ := img.Config()
	tests := []struct {
		name, repo string
		img        Image
		want       string
		wantErr    string
	}{
		{name: "config digest", repo: "keysync/x", img: img, want: "keysync/x:" + cfg.Encoded()[:12]},
		{name: "no repo", img: img, wantErr: "no repository name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.img.DockerTag(tt.repo)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("tag = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestDockerArchive(t *testing.T) {
	a, err := NewLayer(File("/a", 0o755, []byte("a")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewLayer(Directory("/var/lib/b", 0o755))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		layers     []*Layer
		wantLayers []string // file names in manifest.json
		wantFiles  int      // entries in the archive
	}{
		{name: "two layers", layers: []*Layer{a, b}, wantFiles: 4,
			wantLayers: []string{a.DiffID().Encoded() + "/layer.tar", b.DiffID().Encoded() + "/layer.tar"}},
		{name: "a layer twice is written once", layers: []*Layer{a, b, a}, wantFiles: 4,
			wantLayers: []string{a.DiffID().Encoded() + "/layer.tar", b.DiffID().Encoded() + "/layer.tar", a.DiffID().Encoded() + "/layer.tar"}},
		{name: "no layers", wantFiles: 2, wantLayers: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := Image{Layers: tt.layers, Entrypoint: []string{"/a"}}
			var buf bytes.Buffer
			if err := img.writeDockerArchive(&buf, "keysync/x:tag"); err != nil {
				t.Fatal(err)
			}
			files := map[string][]byte{}
			tr := tar.NewReader(&buf)
			for {
				hdr, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				data, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				files[hdr.Name] = data
			}
			if len(files) != tt.wantFiles {
				t.Errorf("%d files in the archive, want %d", len(files), tt.wantFiles)
			}
			var manifest []dockerManifest
			if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
				t.Fatal(err)
			}
			cfg, cfgDigest, _ := img.Config()
			if len(manifest) != 1 || manifest[0].Config != cfgDigest.Encoded()+".json" ||
				strings.Join(manifest[0].RepoTags, ",") != "keysync/x:tag" ||
				strings.Join(manifest[0].Layers, ",") != strings.Join(tt.wantLayers, ",") {
				t.Fatalf("manifest.json = %s", files["manifest.json"])
			}
			if !bytes.Equal(files[manifest[0].Config], cfg) {
				t.Error("config file differs from the image config")
			}
			for i, name := range manifest[0].Layers {
				if got := digest.FromBytes(files[name]); got != tt.layers[i].DiffID() {
					t.Errorf("layer %d (%s): digest %s, want diff ID %s", i, name, got, tt.layers[i].DiffID())
				}
			}
		})
	}
}

// TestEnsureDocker loads an image into the local Docker daemon (skipped without one), reads a
// file back out of a container made from it, and removes both.
func TestEnsureDocker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker daemon: %v: %s", err, out)
	}
	// A fresh nonce: the tag is new, so the first Ensure must load.
	nonce := make([]byte, 8)
	rand.Read(nonce)
	l, err := NewLayer(File("/etc/hello", 0o640, []byte("hello\n")), File("/etc/nonce", 0o644, []byte(hex.EncodeToString(nonce))),
		Directory("/var/lib/registry", 0o755))
	if err != nil {
		t.Fatal(err)
	}
	img := Image{Layers: []*Layer{l}, Entrypoint: []string{"/nonexistent"}, Labels: map[string]string{"org.keysync.test": "ociimage"}}
	const repo = "keysync/ociimage-test"
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	want, _ := img.DockerTag(repo)
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", want).Run() })

	for i, wantReused := range []bool{false, true} {
		tag, reused, err := img.EnsureDocker(ctx, repo)
		if err != nil {
			t.Fatalf("Ensure %d: %v", i, err)
		}
		if tag != want || reused != wantReused {
			t.Fatalf("Ensure %d = %s, reused %v; want %s, %v", i, tag, reused, want, wantReused)
		}
	}
	_, id, _ := img.Config()
	inspect := docker("image", "inspect", "--format", "{{.Id}} {{json .Config.Entrypoint}} {{index .Config.Labels \"org.keysync.test\"}}", want)
	if got := strings.TrimSpace(inspect); got != id.String()+` ["/nonexistent"] ociimage` {
		t.Errorf("inspect = %s", got)
	}
	name := "keysync-ociimage-test-" + hex.EncodeToString(nonce)
	docker("create", "--name", name, "--network", "none", want)
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	for _, tt := range []struct {
		path string
		want tarEntry
	}{
		{"/etc/hello", tarEntry{name: "hello", mode: 0o640, data: "hello\n"}},
		{"/var/lib/registry", tarEntry{name: "registry/", mode: 0o755, dir: true}},
	} {
		out, err := exec.CommandContext(ctx, "docker", "cp", name+":"+tt.path, "-").Output()
		if err != nil {
			t.Fatalf("docker cp %s: %v", tt.path, err)
		}
		tr := tar.NewReader(bytes.NewReader(out))
		hdr, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got := tarEntry{name: hdr.Name, mode: hdr.Mode & 0o7777, dir: hdr.Typeflag == tar.TypeDir, data: string(data)}
		if got != tt.want {
			t.Errorf("%s = %+v, want %+v", tt.path, got, tt.want)
		}
	}
}

func TestEnsureDockerErrors(t *testing.T) {
	l, err := NewLayer(File("/x", 0o755, []byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	img := Image{Layers: []*Layer{l}}
	tests := []struct {
		name    string
		repo    string
		path    string // $PATH
		wantErr string
	}{
		{name: "no repo", path: "/nonexistent", wantErr: "no repository name"},
		{name: "no docker CLI", repo: "keysync/ociimage-test", path: t.TempDir(), wantErr: "failed to run docker load"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path)
			_, _, err := img.EnsureDocker(context.Background(), tt.repo)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
