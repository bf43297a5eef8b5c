package keytree

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/suites/nodedriver/nodelab"
)

func privPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestAuditAndFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	key, other := privPEM(t), privPEM(t)
	tests := []struct {
		name  string
		build func(t *testing.T, root string)
		want  []string // "path: reason" of the problems
	}{
		{name: "clean", build: func(t *testing.T, root string) {
			write(t, root, names.SyncSubdir+"/a.pem", key, 0o600)
		}},
		{name: "every kind of mess", build: func(t *testing.T, root string) {
			write(t, root, names.SyncSubdir+"/a.pem", key, 0o600)
			write(t, root, names.SyncSubdir+"/.a.pem.tmp-123", other, 0o600)
			write(t, root, names.SyncSubdir+"/loose.pem", other, 0o644)
			write(t, root, names.SyncSubdir+"/junk", []byte("not a key"), 0o600)
			if err := os.Symlink("a.pem", filepath.Join(root, names.SyncSubdir, "link")); err != nil {
				t.Fatal(err)
			}
		}, want: []string{
			names.SyncSubdir + "/.a.pem.tmp-123: temp file left in the keys tree",
			names.SyncSubdir + "/junk: not a private key CRI-O can parse (ocicrypt: Unknown decryption key type)",
			names.SyncSubdir + "/link: symbolic links not supported in decryption keys paths",
			names.SyncSubdir + "/loose.pem: mode 0644, want 0600",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			tc.build(t, root)
			d, err := nodelab.New(nodelab.Options{Node: "n", CRIEndpoint: "/nonexistent.sock", KeysRoot: root})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			problems, err := Audit(ctx, d, "n", names.SyncSubdir)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range problems {
				got = append(got, p.Path+": "+p.Reason)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("problems:\n%q\nwant:\n%q", got, tc.want)
			}
			files, err := Files(ctx, d, "n", key)
			if err != nil || len(files) != 1 || files[0].Path != names.SyncSubdir+"/a.pem" {
				t.Fatalf("Files = %+v, %v", files, err)
			}
		})
	}
}

func write(t *testing.T, root, rel string, data []byte, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}
