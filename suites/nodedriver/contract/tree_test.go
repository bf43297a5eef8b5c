package contract_test

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"
)

// treeEntry is one entry of the test's keys tree.
type treeEntry struct {
	path   string // relative to the keys tree
	mode   fs.FileMode
	dir    bool
	data   []byte
	target string // a symlink's target
}

// keys are the bytes the tree holds.
type keys struct{ good, public, text []byte }

func newKeys(t *testing.T) keys {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return keys{
		good:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		public: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		text:   []byte("not a key\n"),
	}
}

// tree is the keys tree every transport is checked against.
func tree(k keys) []treeEntry {
	return []treeEntry{
		{path: "synced", mode: 0o700, dir: true},
		{path: "synced/good.pem", mode: 0o600, data: k.good},
		{path: "synced/link", target: "good.pem"},
		{path: "synced/notes.txt", mode: 0o644, data: k.text},
		{path: "synced/pub.pem", mode: 0o600, data: k.public},
		{path: "synced/with space.pem", mode: 0o600, data: k.good},
	}
}

// writeTree creates entries under root (a host directory).
func writeTree(t *testing.T, root string, entries []treeEntry) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(root, filepath.FromSlash(e.path))
		var err error
		switch {
		case e.dir:
			if err = os.MkdirAll(p, 0o700); err == nil {
				err = os.Chmod(p, e.mode)
			}
		case e.target != "":
			err = os.Symlink(e.target, p)
		default:
			if err = os.WriteFile(p, e.data, e.mode); err == nil {
				err = os.Chmod(p, e.mode)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// tarTree is entries under dir (an absolute path in a container, its parents included) as a
// tar stream for `docker cp -`.
func tarTree(t *testing.T, dir string, entries []treeEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	epoch := time.Unix(0, 0)
	var parents []string
	for d := path.Clean(dir); d != "/"; d = path.Dir(d) {
		parents = append([]string{d[1:]}, parents...)
	}
	for _, p := range parents {
		if err := tw.WriteHeader(&tar.Header{Name: p + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range entries {
		name := path.Join(dir[1:], e.path)
		hdr := &tar.Header{Name: name, Mode: int64(e.mode), ModTime: epoch}
		switch {
		case e.dir:
			hdr.Name += "/"
			hdr.Typeflag = tar.TypeDir
		case e.target != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.target, 0o777
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
