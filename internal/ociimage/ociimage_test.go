package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarEntry is what a test checks of one tar header.
type tarEntry struct {
	name string
	mode int64
	dir  bool
	data string
}

func readTar(t *testing.T, data []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if !hdr.ModTime.Equal(epoch) || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: mtime %s, owner %d:%d (%q:%q), want the epoch and 0:0", hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{name: hdr.Name, mode: hdr.Mode, dir: hdr.Typeflag == tar.TypeDir, data: string(body)})
	}
}

func TestNewLayer(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
		want    []tarEntry
		wantErr string
	}{
		{name: "empty"},
		{name: "file at the root", entries: []Entry{File("/x", 0o755, []byte("prog"))},
			want: []tarEntry{{name: "x", mode: 0o755, data: "prog"}}},
		{name: "parents added once, in order", entries: []Entry{
			File("etc/a/b", 0o644, []byte("1")), File("/etc/a/c", 0o600, nil), Directory("/var/lib/registry", 0o700)},
			want: []tarEntry{{name: "etc/", mode: 0o755, dir: true}, {name: "etc/a/", mode: 0o755, dir: true},
				{name: "etc/a/b", mode: 0o644, data: "1"}, {name: "etc/a/c", mode: 0o600},
				{name: "var/", mode: 0o755, dir: true}, {name: "var/lib/", mode: 0o755, dir: true},
				{name: "var/lib/registry/", mode: 0o700, dir: true}}},
		{name: "listed parents kept", entries: []Entry{Directory("/etc", 0o700), File("/etc/x", 0o644, []byte("x"))},
			want: []tarEntry{{name: "etc/", mode: 0o700, dir: true}, {name: "etc/x", mode: 0o644, data: "x"}}},
		{name: "path cleaned", entries: []Entry{File("/a/../b/./c", 0o644, []byte("c"))},
			want: []tarEntry{{name: "b/", mode: 0o755, dir: true}, {name: "b/c", mode: 0o644, data: "c"}}},
		{name: "only permission bits", entries: []Entry{File("/x", fs.ModeSetuid|0o755, nil)},
			want: []tarEntry{{name: "x", mode: 0o755}}},
		{name: "duplicate", entries: []Entry{File("/x", 0o644, nil), File("x", 0o644, nil)}, wantErr: "listed twice"},
		{name: "parent listed late", entries: []Entry{File("/etc/x", 0o644, nil), Directory("/etc", 0o755)}, wantErr: "listed twice"},
		{name: "under a file", entries: []Entry{File("/x", 0o644, nil), File("/x/y", 0o644, nil)}, wantErr: "under the file /x"},
		{name: "root", entries: []Entry{Directory("/", 0o755)}, wantErr: "invalid image path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewLayer(tt.entries...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := readTar(t, l.Tar())
			if len(got) != len(tt.want) {
				t.Fatalf("entries = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("entry %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			if l.DiffID() != digest.FromBytes(l.Tar()) {
				t.Errorf("diff ID %s is not the tar's digest", l.DiffID())
			}
			if l.Digest() != digest.FromBytes(l.Blob()) {
				t.Errorf("digest %s is not the blob's digest", l.Digest())
			}
			zr, err := gzipReader(l.Blob())
			if err != nil {
				t.Fatal(err)
			}
			if zr.Name != "" || !zr.ModTime.IsZero() {
				t.Errorf("gzip header has name %q, time %s", zr.Name, zr.ModTime)
			}
			raw, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(raw, l.Tar()) {
				t.Errorf("blob does not decompress to the tar (err %v)", err)
			}
		})
	}
}

// digests are everything that names an image.
type digests struct {
	diffID, layer, config, manifest digest.Digest
}

func imageDigests(t *testing.T, img Image) digests {
	t.Helper()
	_, c, err := img.Config()
	if err != nil {
		t.Fatal(err)
	}
	_, m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return digests{diffID: img.Layers[0].DiffID(), layer: img.Layers[0].Digest(), config: c, manifest: m}
}

func TestImageReproducible(t *testing.T) {
	type input struct {
		entries []Entry
		img     Image
	}
	base := func() input {
		return input{
			entries: []Entry{File("/bin/x", 0o755, []byte("one")), File("/etc/c", 0o644, []byte("c"))},
			img:     Image{Entrypoint: []string{"/bin/x"}, Labels: map[string]string{"a": "1", "b": "2"}},
		}
	}
	build := func(t *testing.T, in input) Image {
		t.Helper()
		l, err := NewLayer(in.entries...)
		if err != nil {
			t.Fatal(err)
		}
		img := in.img
		img.Layers = []*Layer{l}
		return img
	}
	want := imageDigests(t, build(t, base()))
	if again := imageDigests(t, build(t, base())); again != want {
		t.Fatalf("same input, different digests: %+v vs %+v", want, again)
	}
	tests := []struct {
		name        string
		change      func(*input)
		sameLayer   bool // only the config changes
		sameDiffIDs bool
	}{
		{name: "contents", change: func(in *input) { in.entries[0].Data = []byte("two") }},
		{name: "mode", change: func(in *input) { in.entries[0].Mode = 0o700 }},
		{name: "path", change: func(in *input) { in.entries[0].Path = "/bin/y" }},
		{name: "order", change: func(in *input) { in.entries[0], in.entries[1] = in.entries[1], in.entries[0] }},
		{name: "directory", change: func(in *input) { in.entries = append(in.entries, Directory("/var/lib/x", 0o755)) }},
		{name: "entrypoint", change: func(in *input) { in.img.Entrypoint = []string{"/bin/x", "-v"} }, sameLayer: true},
		{name: "cmd", change: func(in *input) { in.img.Cmd = []string{"-v"} }, sameLayer: true},
		{name: "env", change: func(in *input) { in.img.Env = []string{"A=1"} }, sameLayer: true},
		{name: "label", change: func(in *input) { in.img.Labels = map[string]string{"a": "1"} }, sameLayer: true},
		{name: "history", change: func(in *input) { in.img.CreatedBy = "someone" }, sameLayer: true},
	}
	seen := map[digest.Digest]string{want.config: "base"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			tt.change(&in)
			got := imageDigests(t, build(t, in))
			if tt.sameLayer != (got.diffID == want.diffID) || tt.sameLayer != (got.layer == want.layer) {
				t.Errorf("layer %s/%s vs base %s/%s; want same: %v", got.diffID, got.layer, want.diffID, want.layer, tt.sameLayer)
			}
			if got.manifest == want.manifest {
				t.Error("manifest digest unchanged")
			}
			if prev, dup := seen[got.config]; dup {
				t.Errorf("config digest %s same as for %s", got.config, prev)
			}
			seen[got.config] = tt.name
		})
	}
}

func TestConfigAndManifest(t *testing.T) {
	a, err := NewLayer(File("/a", 0o644, []byte("a")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewLayer(File("/b", 0o644, []byte("b")))
	if err != nil {
		t.Fatal(err)
	}
	img := Image{Layers: []*Layer{a, b}, Entrypoint: []string{"/a"}, Cmd: []string{"x"}, Env: []string{"A=1"},
		Labels: map[string]string{"l": "v"}, CreatedBy: "test"}
	cfgJSON, cfgDigest, err := img.Config()
	if err != nil {
		t.Fatal(err)
	}
	var cfg imgspec.Image
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.Created.Equal(epoch) || cfg.OS != "linux" || cfg.Architecture != "amd64" || cfg.RootFS.Type != "layers" {
		t.Errorf("config = %s", cfgJSON)
	}
	if len(cfg.RootFS.DiffIDs) != 2 || cfg.RootFS.DiffIDs[0] != a.DiffID() || cfg.RootFS.DiffIDs[1] != b.DiffID() {
		t.Errorf("diff IDs = %v", cfg.RootFS.DiffIDs)
	}
	if len(cfg.History) != 2 || cfg.History[1].CreatedBy != "test" || !cfg.History[1].Created.Equal(epoch) {
		t.Errorf("history = %+v", cfg.History)
	}
	c := cfg.Config
	if strings.Join(c.Entrypoint, " ") != "/a" || strings.Join(c.Cmd, " ") != "x" || strings.Join(c.Env, " ") != "A=1" || c.Labels["l"] != "v" {
		t.Errorf("config.config = %+v", c)
	}
	manJSON, manDigest, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if manDigest != digest.FromBytes(manJSON) || cfgDigest != digest.FromBytes(cfgJSON) {
		t.Error("digests do not match the JSON")
	}
	var m imgspec.Manifest
	if err := json.Unmarshal(manJSON, &m); err != nil {
		t.Fatal(err)
	}
	if m.SchemaVersion != 2 || m.MediaType != imgspec.MediaTypeImageManifest || m.Config.MediaType != imgspec.MediaTypeImageConfig ||
		m.Config.Digest != cfgDigest || m.Config.Size != int64(len(cfgJSON)) {
		t.Errorf("manifest = %s", manJSON)
	}
	for i, l := range []*Layer{a, b} {
		if d := m.Layers[i]; d.MediaType != imgspec.MediaTypeImageLayerGzip || d.Digest != l.Digest() || d.Size != int64(len(l.Blob())) {
			t.Errorf("layer %d = %+v", i, d)
		}
	}
	// No created_by given: "keysync".
	if cfgJSON, _, _ := (Image{Layers: []*Layer{a}}).Config(); !strings.Contains(string(cfgJSON), `"created_by":"keysync"`) {
		t.Errorf("default history: %s", cfgJSON)
	}
}

func TestHostFile(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.WriteFile(bin, []byte("binary"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o750); err != nil { // umask
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		src     string
		wantErr string
	}{
		{name: "file", src: bin},
		{name: "symlink followed", src: link},
		{name: "missing", src: filepath.Join(dir, "missing"), wantErr: "failed to read image file"},
		{name: "directory", src: dir, wantErr: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := HostFile("/usr/bin/x", tt.src)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Path != "/usr/bin/x" || e.Mode != 0o750 || string(e.Data) != "binary" || e.Dir {
				t.Errorf("entry = %+v", e)
			}
		})
	}
	entries, err := HostFiles(map[string]string{"/z": bin, "/a": link})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Path != "/a" || entries[1].Path != "/z" {
		t.Errorf("HostFiles = %+v, want path order", entries)
	}
	if _, err := HostFiles(map[string]string{"/a": bin, "/b": filepath.Join(dir, "missing")}); err == nil {
		t.Error("HostFiles with a missing file: no error")
	}
}

func TestWriteLayout(t *testing.T) {
	shared, err := NewLayer(File("/prog", 0o755, []byte("program")))
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]Image{}
	for _, name := range []string{"one", "two"} {
		data, err := NewLayer(File("/etc/name", 0o644, []byte(name)))
		if err != nil {
			t.Fatal(err)
		}
		images[name] = Image{Layers: []*Layer{shared, data}, Entrypoint: []string{"/prog"}, Labels: map[string]string{"name": name}}
	}
	tests := []struct {
		name    string
		tags    []string
		wantErr string
	}{
		{name: "two images sharing a layer", tags: []string{"two", "one"}},
		{name: "none", tags: nil},
		{name: "unknown tag", tags: []string{"one", "three"}, wantErr: `no image for tag "three"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteLayout(dir, tt.tags, images)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Writing again over the same layout is fine and changes nothing.
			if err := WriteLayout(dir, tt.tags, images); err != nil {
				t.Fatalf("second write: %v", err)
			}
			checkLayout(t, dir, tt.tags, images)
		})
	}
}

// checkLayout reads the layout as a consumer would: oci-layout, index.json, then every blob
// through its descriptor, checking digests and sizes.
func checkLayout(t *testing.T, dir string, tags []string, images map[string]Image) {
	t.Helper()
	var layout imgspec.ImageLayout
	readJSON(t, filepath.Join(dir, imgspec.ImageLayoutFile), &layout)
	if layout.Version != imgspec.ImageLayoutVersion {
		t.Errorf("oci-layout version %q", layout.Version)
	}
	var index imgspec.Index
	readJSON(t, filepath.Join(dir, imgspec.ImageIndexFile), &index)
	if index.SchemaVersion != 2 || index.MediaType != imgspec.MediaTypeImageIndex || len(index.Manifests) != len(tags) {
		t.Fatalf("index = %+v", index)
	}
	blob := func(d imgspec.Descriptor) []byte {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(data) != d.Digest || int64(len(data)) != d.Size {
			t.Fatalf("blob %s: digest %s, size %d; descriptor size %d", d.Digest, digest.FromBytes(data), len(data), d.Size)
		}
		return data
	}
	for i, tag := range tags {
		d := index.Manifests[i]
		if d.Annotations[imgspec.AnnotationRefName] != tag || d.MediaType != imgspec.MediaTypeImageManifest ||
			d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != "amd64" {
			t.Errorf("index entry %d = %+v, want tag %s", i, d, tag)
		}
		_, want, _ := images[tag].Manifest()
		if d.Digest != want {
			t.Errorf("%s: manifest %s, want %s", tag, d.Digest, want)
		}
		var m imgspec.Manifest
		if err := json.Unmarshal(blob(d), &m); err != nil {
			t.Fatal(err)
		}
		var cfg imgspec.Image
		if err := json.Unmarshal(blob(m.Config), &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Config.Labels["name"] != tag || len(m.Layers) != len(cfg.RootFS.DiffIDs) {
			t.Errorf("%s: config %+v, %d layers", tag, cfg, len(m.Layers))
		}
		for j, ld := range m.Layers {
			zr, err := gzipReader(blob(ld))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if digest.FromBytes(raw) != cfg.RootFS.DiffIDs[j] {
				t.Errorf("%s: layer %d does not match its diff ID", tag, j)
			}
		}
	}
	leftovers, err := filepath.Glob(filepath.Join(dir, "blobs", "sha256", ".*"))
	if err != nil || len(leftovers) > 0 {
		t.Errorf("temporary files left: %v (%v)", leftovers, err)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestWriteLayoutUnwritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteLayout(filepath.Join(file, "layout"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "failed to create OCI layout") {
		t.Fatalf("err = %v", err)
	}
}

func gzipReader(blob []byte) (*gzip.Reader, error) {
	return gzip.NewReader(bytes.NewReader(blob))
}
