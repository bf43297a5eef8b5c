package freshimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
	"github.com/containers/ocicrypt"
	"github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/internal/ociimage"
	"github.com/keysync-dev/keysync/internal/registry"
)

// pushPlain pushes a plain fixture-like image (program and marker layers) as repo:tag.
func pushPlain(t *testing.T, addr, repo string, entries ...ociimage.Entry) string {
	t.Helper()
	var layers []*ociimage.Layer
	for _, e := range entries {
		l, err := ociimage.NewLayer(e)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img := ociimage.Image{Layers: layers, Entrypoint: []string{names.FixtureMarkerProgram}}
	if _, err := img.Push(context.Background(), http.DefaultClient, addr, repo, "1"); err != nil {
		t.Fatal(err)
	}
	return addr + "/" + repo + ":1"
}

// pulled reads ref's manifest and decrypts every layer with the keys in keysDir, the way
// CRI-O does (crikeys.LoadDir builds CRI-O's DecryptConfig).
func pulled(t *testing.T, ref, keysDir string) (imgspec.Manifest, [][]byte, error) {
	t.Helper()
	ctx := context.Background()
	r, err := parseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	src, err := r.NewImageSource(ctx, &types.SystemContext{DockerInsecureSkipTLSVerify: types.NewOptionalBool(true)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	raw, _, err := src.GetManifest(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var m imgspec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	dc, err := crikeys.LoadDir(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	var plain [][]byte
	for _, l := range m.Layers {
		rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: l.Digest, Size: l.Size}, none.NoCache)
		if err != nil {
			t.Fatal(err)
		}
		dr, _, err := ocicrypt.DecryptLayer(dc, rc, l, false)
		if err != nil {
			rc.Close()
			return m, nil, err
		}
		data, err := io.ReadAll(dr)
		rc.Close()
		if err != nil {
			return m, nil, err
		}
		plain = append(plain, data)
	}
	return m, plain, nil
}

func TestPush(t *testing.T) {
	ctx := context.Background()
	reg, err := registry.Start(ctx, registry.Options{})
	if err != nil {
		t.Fatalf("failed to start the registry (install it with `make deps`): %v", err)
	}
	t.Cleanup(func() { _ = reg.Stop() })
	program := []byte("#!/bin/true\nthe marker program\n")
	plainRef := pushPlain(t, reg.Addr(), "fixtures/jwe-rsa-plain",
		ociimage.File(names.FixtureMarkerProgram, 0o755, program),
		ociimage.File(names.FixtureMarkerData, 0o644, []byte(names.FixtureMarkerPrefix+"jwe-rsa-plain\n")))
	marker := names.FixtureMarkerPrefix + "fresh run=r1"
	img, err := Push(ctx, Options{Registry: reg.Addr(), Repo: "keysync-suites/fresh", Tag: "r1", PlainRef: plainRef, Marker: marker, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if img.Ref != reg.Addr()+"/keysync-suites/fresh:r1" || img.Marker != marker {
		t.Fatalf("image %s marker %q", img.Ref, img.Marker)
	}

	keys := func(files map[string][]byte) string {
		dir := t.TempDir()
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	other, err := Push(ctx, Options{Registry: reg.Addr(), Repo: "keysync-suites/fresh", Tag: "r2", PlainRef: plainRef, Marker: marker, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.Key, img.Key) {
		t.Fatal("two pushes share a key")
	}
	tests := []struct {
		name    string
		keys    map[string][]byte
		wantErr string
	}{
		{name: "its key decrypts every layer", keys: map[string][]byte{"k.pem": img.Key}},
		{name: "no key", keys: nil, wantErr: "missing private key needed for decryption"},
		{name: "another run's key", keys: map[string][]byte{"k.pem": other.Key}, wantErr: "none of the private keys could be used for decryption"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, layers, err := pulled(t, img.Ref, keys(tt.keys))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Layers) != 2 {
				t.Fatalf("%d layers, want 2", len(m.Layers))
			}
			for i, l := range m.Layers {
				if l.MediaType != imgspec.MediaTypeImageLayerGzip+"+encrypted" || l.Annotations["org.opencontainers.image.enc.keys.jwe"] == "" {
					t.Errorf("layer %d: media type %s, annotations %v: want a JWE-encrypted gzip layer", i, l.MediaType, l.Annotations)
				}
			}
			for file, want := range map[string][]byte{names.FixtureMarkerProgram: program, names.FixtureMarkerData: []byte(marker + "\n")} {
				found := false
				for _, data := range layers {
					if got, err := findFile(bytes.NewReader(data), true, file); err == nil {
						found = bytes.Equal(got, want)
					}
				}
				if !found {
					t.Errorf("no layer holds %s with the expected contents", file)
				}
			}
			// The config's diff IDs name the decrypted layers' tars.
			cfgRef, _ := parseRef(img.Ref)
			src, err := cfgRef.NewImageSource(ctx, &types.SystemContext{DockerInsecureSkipTLSVerify: types.NewOptionalBool(true)})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: m.Config.Digest, Size: m.Config.Size}, none.NoCache)
			if err != nil {
				t.Fatal(err)
			}
			var cfg imgspec.Image
			err = json.NewDecoder(rc).Decode(&cfg)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			for i, data := range layers {
				tarData, err := gunzip(data)
				if err != nil {
					t.Fatal(err)
				}
				if d := digest.FromBytes(tarData); i >= len(cfg.RootFS.DiffIDs) || cfg.RootFS.DiffIDs[i] != d {
					t.Errorf("layer %d: diff ID %s, config names %v", i, d, cfg.RootFS.DiffIDs)
				}
			}
		})
	}

	// Bad input: a clear error, nothing pushed.
	encRef := img.Ref
	noProgram := pushPlain(t, reg.Addr(), "fixtures/other", ociimage.File("/bin/other", 0o755, []byte("x")))
	bad := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"registry with a path", Options{Registry: reg.Addr() + "/x", Repo: "r", Tag: "t", PlainRef: plainRef, Marker: marker}, "registry must be host:port"},
		{"no tag", Options{Registry: reg.Addr(), Repo: "r", PlainRef: plainRef, Marker: marker}, "tag and plain image are required"},
		{"marker without the prefix", Options{Registry: reg.Addr(), Repo: "r", Tag: "t", PlainRef: plainRef, Marker: "hello"}, "is not one line starting with"},
		{"marker of two lines", Options{Registry: reg.Addr(), Repo: "r", Tag: "t", PlainRef: plainRef, Marker: marker + "\nx"}, "is not one line"},
		{"plain image without the program", Options{Registry: reg.Addr(), Repo: "r", Tag: "t", PlainRef: noProgram, Marker: marker, Insecure: true}, "no layer holds the marker program"},
		{"an encrypted image as the plain one", Options{Registry: reg.Addr(), Repo: "r", Tag: "t", PlainRef: encRef, Marker: marker, Insecure: true}, "is encrypted"},
		{"no such image", Options{Registry: reg.Addr(), Repo: "r", Tag: "t", PlainRef: reg.Addr() + "/nope:1", Marker: marker, Insecure: true}, "manifest unknown"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Push(ctx, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func gunzip(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return io.ReadAll(zr)
}
