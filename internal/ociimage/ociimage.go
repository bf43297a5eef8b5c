// Package ociimage builds small images FROM scratch and delivers them: reproducible layers
// (fixed timestamps and owners, entries in the given order), an OCI config and manifest, and
// three ways out: an OCI image layout on disk (WriteLayout), a push over plain HTTP to a
// registry (Image.Push) and a load into the local Docker daemon (Image.EnsureDocker).
//
// The fixtures' images, the node lab's pause image and the kind lab's registry and mockkp
// images are built here.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "crypto/sha256" // go-digest's sha256
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
)

// epoch is the timestamp of every entry and of the image config, so digests are reproducible.
var epoch = time.Unix(0, 0).UTC()

// platform is the only platform built here.
var platform = imgspec.Platform{Architecture: "amd64", OS: "linux"}

// Entry is one file or directory of a layer.
type Entry struct {
	// Path is the path inside the image ("/usr/bin/x"; the leading slash is optional).
	Path string
	// Mode holds the permission bits in the image.
	Mode fs.FileMode
	// Data is a file's contents.
	Data []byte
	// Dir makes the entry a directory (Data is ignored).
	Dir bool
}

// File is a regular file at path with the given mode and contents.
func File(path string, mode fs.FileMode, data []byte) Entry {
	return Entry{Path: path, Mode: mode, Data: data}
}

// Directory is a directory at path with the given mode.
func Directory(path string, mode fs.FileMode) Entry {
	return Entry{Path: path, Mode: mode, Dir: true}
}

// HostFile is the host file src (symlinks followed) at path in the image, with its contents
// and permission bits.
func HostFile(path, src string) (Entry, error) {
	st, err := os.Stat(src)
	if err != nil {
		return Entry{}, fmt.Errorf("failed to read image file %s: %w", src, err)
	}
	if !st.Mode().IsRegular() {
		return Entry{}, fmt.Errorf("failed to read image file %s: not a regular file", src)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return Entry{}, fmt.Errorf("failed to read image file %s: %w", src, err)
	}
	return File(path, st.Mode().Perm(), data), nil
}

// HostFiles reads host files (path in the image → host path), in path order.
func HostFiles(files map[string]string) ([]Entry, error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	entries := make([]Entry, 0, len(paths))
	for _, p := range paths {
		e, err := HostFile(p, files[p])
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// Layer is one layer: its tar, and the gzip-compressed blob made once when first needed.
type Layer struct {
	tar    []byte
	diffID digest.Digest

	once   sync.Once
	blob   []byte
	digest digest.Digest
}

// NewLayer writes entries into a deterministic tar: PAX headers, the epoch as every mtime,
// owner 0:0, entries in the given order. A missing parent directory is added (mode 0755) just
// before the first entry under it; an entry listed twice, or under a file, is an error.
func NewLayer(entries ...Entry) (*Layer, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	isDir := map[string]bool{}
	write := func(name string, mode fs.FileMode, data []byte, dir bool) error {
		hdr := &tar.Header{Name: name, Mode: int64(mode.Perm()), ModTime: epoch, Format: tar.FormatPAX}
		if dir {
			hdr.Name += "/"
			hdr.Typeflag = tar.TypeDir
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("failed to write tar header %s: %w", hdr.Name, err)
		}
		if !dir {
			if _, err := tw.Write(data); err != nil {
				return fmt.Errorf("failed to write tar entry %s: %w", name, err)
			}
		}
		isDir[name] = dir
		return nil
	}
	for _, e := range entries {
		name := strings.TrimPrefix(path.Clean("/"+e.Path), "/")
		if name == "" {
			return nil, fmt.Errorf("invalid image path %q", e.Path)
		}
		if _, dup := isDir[name]; dup {
			return nil, fmt.Errorf("image path /%s listed twice (or after an entry under it)", name)
		}
		for i := 0; i < len(name); i++ {
			if name[i] != '/' {
				continue
			}
			parent := name[:i]
			dir, seen := isDir[parent]
			if seen && !dir {
				return nil, fmt.Errorf("image path /%s is under the file /%s", name, parent)
			}
			if !seen {
				if err := write(parent, 0o755, nil, true); err != nil {
					return nil, err
				}
			}
		}
		if err := write(name, e.Mode, e.Data, e.Dir); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("failed to finish tar: %w", err)
	}
	return &Layer{tar: raw.Bytes(), diffID: digest.FromBytes(raw.Bytes())}, nil
}

// Tar is the uncompressed tar (not to be modified).
func (l *Layer) Tar() []byte { return l.tar }

// DiffID is the digest of the uncompressed tar.
func (l *Layer) DiffID() digest.Digest { return l.diffID }

// Digest is the digest of the compressed blob.
func (l *Layer) Digest() digest.Digest {
	l.compress()
	return l.digest
}

// Blob is the gzip-compressed tar (best compression, no name or time in the gzip header).
func (l *Layer) Blob() []byte {
	l.compress()
	return l.blob
}

func (l *Layer) compress() {
	l.once.Do(func() {
		var gz bytes.Buffer
		zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		if err != nil {
			panic(err) // only for an invalid level
		}
		// Writing to a bytes.Buffer does not fail.
		_, _ = zw.Write(l.tar)
		_ = zw.Close()
		l.blob = gz.Bytes()
		l.digest = digest.FromBytes(l.blob)
	})
}

// Image is an image FROM scratch: its layers (bottom first) and its config.
type Image struct {
	Layers     []*Layer
	Entrypoint []string
	Cmd        []string
	Env        []string
	Labels     map[string]string
	// CreatedBy is recorded in every layer's history entry; empty means "keysync".
	CreatedBy string
}

// Config is the image config JSON (created at the epoch, linux/amd64) and its digest. It holds
// the layers' diff IDs, so it names the contents without compressing anything.
func (img Image) Config() ([]byte, digest.Digest, error) {
	createdBy := img.CreatedBy
	if createdBy == "" {
		createdBy = "keysync"
	}
	diffIDs := make([]digest.Digest, len(img.Layers))
	history := make([]imgspec.History, len(img.Layers))
	for i, l := range img.Layers {
		diffIDs[i] = l.DiffID()
		history[i] = imgspec.History{Created: &epoch, CreatedBy: createdBy}
	}
	cfg := imgspec.Image{
		Created:  &epoch,
		Platform: platform,
		Config: imgspec.ImageConfig{
			Entrypoint: img.Entrypoint,
			Cmd:        img.Cmd,
			Env:        img.Env,
			Labels:     img.Labels,
		},
		RootFS:  imgspec.RootFS{Type: "layers", DiffIDs: diffIDs},
		History: history,
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("failed to encode image config: %w", err)
	}
	return data, digest.FromBytes(data), nil
}

// Manifest is the OCI image manifest JSON (gzip layers) and its digest; it compresses the
// layers not compressed yet.
func (img Image) Manifest() ([]byte, digest.Digest, error) {
	cfg, cfgDigest, err := img.Config()
	if err != nil {
		return nil, "", err
	}
	descs := make([]imgspec.Descriptor, len(img.Layers))
	for i, l := range img.Layers {
		descs[i] = imgspec.Descriptor{MediaType: imgspec.MediaTypeImageLayerGzip, Digest: l.Digest(), Size: int64(len(l.Blob()))}
	}
	m := imgspec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspec.MediaTypeImageManifest,
		Config:    imgspec.Descriptor{MediaType: imgspec.MediaTypeImageConfig, Digest: cfgDigest, Size: int64(len(cfg))},
		Layers:    descs,
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, "", fmt.Errorf("failed to encode image manifest: %w", err)
	}
	return data, digest.FromBytes(data), nil
}
