package kind

import (
	"context"
	"errors"
	"io/fs"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/internal/ociimage"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

func TestParseFind(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []nodedriver.Entry
		wantErr string
	}{
		{name: "empty", in: ""},
		{name: "file dir symlink", in: "d 755 4096 synced\nf 600 42 synced/a b.pem\nl 777 9 synced/link\n", want: []nodedriver.Entry{
			{Path: "synced", Mode: 0o755, Type: nodedriver.TypeDir},
			{Path: "synced/a b.pem", Mode: 0o600, Size: 42, Type: nodedriver.TypeFile},
			{Path: "synced/link", Mode: 0o777, Type: nodedriver.TypeSymlink},
		}},
		{name: "fifo is other", in: "p 644 0 fifo\n", want: []nodedriver.Entry{{Path: "fifo", Mode: 0o644, Type: nodedriver.TypeOther}}},
		{name: "short line", in: "f 600 42\n", wantErr: "line 1"},
		{name: "escaping path", in: "f 600 1 ../x\n", wantErr: "inside the keys tree"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFind([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("entry %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	for _, nodes := range [][]string{nil, {""}, {"a b"}, {"x/y"}} {
		if _, err := New(Options{Nodes: nodes}); err == nil {
			t.Errorf("New(%q): no error", nodes)
		}
	}
}

// nodeImage builds a FROM-scratch stand-in for a node holding only what the driver runs inside
// nodes (sh, find, cat) and what the test uses to set up a tree: the host's binaries and the
// libraries ldd names for them.
func nodeImage(t *testing.T) string {
	t.Helper()
	files := map[string]string{}
	for _, name := range []string{"sh", "find", "cat", "sleep", "mkdir", "chmod", "ln"} {
		bin, err := exec.LookPath(name)
		if err != nil {
			t.Fatalf("failed to find %s on the host: %v", name, err)
		}
		files["/bin/"+name] = bin
		out, err := exec.Command("ldd", bin).Output()
		if err != nil {
			t.Fatalf("failed to list libraries of %s: %v", bin, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			for _, f := range strings.Fields(line) {
				if strings.HasPrefix(f, "/") {
					files[f] = f
				}
			}
		}
	}
	entries, err := ociimage.HostFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := ociimage.NewLayer(entries...)
	if err != nil {
		t.Fatal(err)
	}
	img := ociimage.Image{Layers: []*ociimage.Layer{layer}, Entrypoint: []string{"/bin/sleep", "600"}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tag, _, err := img.EnsureDocker(ctx, "keysync/kind-driver-test")
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// TestKeysTree runs a container standing in for a node (same docker exec path as a kind node)
// and checks ListKeys and ReadKey against a tree with a file, a directory and a symlink.
func TestKeysTree(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	node := "keysync-kind-driver-test"
	exec.Command("docker", "rm", "-f", node).Run()
	if out, err := exec.CommandContext(ctx, "docker", "run", "-d", "--name", node, "--network", "none",
		nodeImage(t)).CombinedOutput(); err != nil {
		t.Fatalf("failed to start node container: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", node).Run() })
	d, err := New(Options{Nodes: []string{node}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := d.ListKeys(ctx, node); err != nil || len(got) != 0 {
		t.Fatalf("missing tree: %v, %v; want empty", got, err)
	}
	setup := `mkdir -p /etc/crio/keys/synced && printf 'PEMDATA' > /etc/crio/keys/synced/k.pem &&
chmod 600 /etc/crio/keys/synced/k.pem && ln -s k.pem /etc/crio/keys/synced/link && mkdir /etc/crio/keys/synced/dir`
	if _, err := d.exec(ctx, node, "sh", "-c", setup); err != nil {
		t.Fatal(err)
	}
	entries, err := d.ListKeys(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]nodedriver.Entry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	want := map[string]nodedriver.Entry{
		"synced":       {Path: "synced", Mode: 0o755, Type: nodedriver.TypeDir},
		"synced/k.pem": {Path: "synced/k.pem", Mode: 0o600, Size: 7, Type: nodedriver.TypeFile},
		"synced/link":  {Path: "synced/link", Mode: 0o777, Type: nodedriver.TypeSymlink},
		"synced/dir":   {Path: "synced/dir", Mode: 0o755, Type: nodedriver.TypeDir},
	}
	if len(byPath) != len(want) {
		t.Errorf("entries %v, want %v", entries, want)
	}
	for p, w := range want {
		if byPath[p] != w {
			t.Errorf("%s = %+v, want %+v", p, byPath[p], w)
		}
	}
	tests := []struct {
		rel      string
		want     string
		wantErr  string
		notExist bool
	}{
		{rel: "synced/k.pem", want: "PEMDATA"},
		{rel: "synced/missing", notExist: true},
		{rel: "synced/link", wantErr: "not a regular file"},
		{rel: "synced/dir", wantErr: "not a regular file"},
		{rel: "../etc/passwd", wantErr: "inside the keys tree"},
	}
	for _, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			got, err := d.ReadKey(ctx, node, tt.rel)
			switch {
			case tt.notExist:
				if !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("err = %v, want fs.ErrNotExist", err)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case string(got) != tt.want:
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := d.ListKeys(ctx, "other-node"); err == nil {
		t.Error("unknown node: no error")
	}
	if _, err := d.RunImage(ctx, node, "x"); !errors.Is(err, nodedriver.ErrUnsupported) {
		t.Errorf("RunImage without client: %v, want ErrUnsupported", err)
	}
}
