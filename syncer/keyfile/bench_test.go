package keyfile_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/keysync-dev/keysync/syncer/keyfile"
)

// BenchmarkPutNew: writing new files into a tree that already holds 1,000 (each write records
// ownership durably before the rename).
func BenchmarkPutNew(b *testing.B) {
	root := b.TempDir()
	s, err := keyfile.Open(keyfile.Options{Dir: filepath.Join(root, "keys"), StagingDir: filepath.Join(root, "stage")})
	if err != nil {
		b.Fatal(err)
	}
	data := []byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOx4Yx4nl2Wb7bGvyZeCfIJQ9NFOX0Wc6M8hkc0bKZD5\n-----END PRIVATE KEY-----\n")
	for i := range 1000 {
		if _, err := s.Put(keyfile.Name("ns", fmt.Sprint("pre-", i), "k"), keyfile.Record{Secret: fmt.Sprint("pre-", i)}, data); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Put(keyfile.Name("ns", fmt.Sprint("s-", i), "k"), keyfile.Record{Secret: fmt.Sprint("s-", i)}, data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutUnchanged: the resync path, an unchanged file (compare only).
func BenchmarkPutUnchanged(b *testing.B) {
	root := b.TempDir()
	s, err := keyfile.Open(keyfile.Options{Dir: filepath.Join(root, "keys"), StagingDir: filepath.Join(root, "stage")})
	if err != nil {
		b.Fatal(err)
	}
	data := []byte("key")
	name := keyfile.Name("ns", "s", "k")
	if _, err := s.Put(name, keyfile.Record{Secret: "s"}, data); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if wrote, err := s.Put(name, keyfile.Record{Secret: "s"}, data); err != nil || wrote {
			b.Fatal("rewrote", err)
		}
	}
}
