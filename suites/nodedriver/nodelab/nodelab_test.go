package nodelab

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/suites/nodedriver"
)

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no node", Options{CRIEndpoint: "/run/crio.sock", KeysRoot: "/k"}, "NODES"},
		{"relative root", Options{Node: "n", CRIEndpoint: "/run/crio.sock", KeysRoot: "k"}, "KEYS_ROOT"},
		{"no endpoint", Options{Node: "n", KeysRoot: "/k"}, "CRI_ENDPOINT"},
		{"tcp endpoint", Options{Node: "n", KeysRoot: "/k", CRIEndpoint: "tcp://x:1"}, "unix://"},
		{"ok path", Options{Node: "n", KeysRoot: "/k", CRIEndpoint: "/run/crio.sock"}, ""},
		{"ok url", Options{Node: "n", KeysRoot: "/k", CRIEndpoint: "unix:///run/crio.sock"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := New(tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				d.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestKeysTree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "keys")
	d, err := New(Options{Node: "node-lab", CRIEndpoint: "/nonexistent.sock", KeysRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	if es, err := d.ListKeys(ctx, "node-lab"); err != nil || len(es) != 0 {
		t.Fatalf("missing tree: %v, %v; want empty", es, err)
	}
	if err := os.MkdirAll(filepath.Join(root, "synced"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "synced", "a.pem"), []byte("PEM-A"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.pem", filepath.Join(root, "synced", "link")); err != nil {
		t.Fatal(err)
	}
	es, err := d.ListKeys(ctx, "node-lab")
	if err != nil {
		t.Fatal(err)
	}
	want := []nodedriver.Entry{
		{Path: "synced", Mode: 0o700, Type: nodedriver.TypeDir},
		{Path: "synced/a.pem", Mode: 0o600, Size: 5, Type: nodedriver.TypeFile},
		{Path: "synced/link", Mode: 0o777, Type: nodedriver.TypeSymlink},
	}
	if !reflect.DeepEqual(es, want) {
		t.Fatalf("ListKeys = %+v, want %+v", es, want)
	}
	if b, err := d.ReadKey(ctx, "node-lab", "synced/a.pem"); err != nil || string(b) != "PEM-A" {
		t.Fatalf("ReadKey = %q, %v", b, err)
	}
	if _, err := d.ReadKey(ctx, "node-lab", "synced/link"); err == nil {
		t.Fatal("ReadKey followed a symlink")
	}
	if _, err := d.ReadKey(ctx, "node-lab", "synced/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadKey missing: %v, want fs.ErrNotExist", err)
	}
	if _, err := d.ReadKey(ctx, "node-lab", "synced"); err == nil {
		t.Fatal("ReadKey read a directory")
	}
	if _, err := d.ListKeys(ctx, "other"); err == nil {
		t.Fatal("ListKeys accepted an unknown node")
	}
}
