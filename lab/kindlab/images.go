package kindlab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// ScratchImage is an image built FROM scratch out of host files: no base image, no pull.
type ScratchImage struct {
	// Repo is the local repository name; the tag is a hash of the contents.
	Repo string
	// Files maps a path inside the image to a host file (copied with its mode).
	Files map[string]string
	// Data maps a path inside the image to literal contents (mode 0644).
	Data map[string][]byte
	// Entrypoint is the image's ENTRYPOINT (exec form).
	Entrypoint []string
}

// dockerfile renders the image's Dockerfile; its context holds the files under rootfs/.
func (s ScratchImage) dockerfile() string {
	df := "FROM scratch\nCOPY rootfs/ /\n"
	if len(s.Entrypoint) > 0 {
		df += "ENTRYPOINT ["
		for i, a := range s.Entrypoint {
			if i > 0 {
				df += ","
			}
			df += fmt.Sprintf("%q", a)
		}
		df += "]\n"
	}
	return df
}

// Tag is Repo:<hash of the Dockerfile and every file's path, mode and contents>.
func (s ScratchImage) Tag() (string, error) {
	if s.Repo == "" {
		return "", fmt.Errorf("scratch image has no repository name")
	}
	h := sha256.New()
	io.WriteString(h, s.dockerfile())
	for _, dst := range sortedKeys(s.Files) {
		f, err := os.Open(s.Files[dst])
		if err != nil {
			return "", fmt.Errorf("failed to read %s for image %s: %w", s.Files[dst], s.Repo, err)
		}
		st, err := f.Stat()
		if err == nil {
			fmt.Fprintf(h, "\x00file %s %o\x00", dst, st.Mode().Perm())
			_, err = io.Copy(h, f)
		}
		f.Close()
		if err != nil {
			return "", fmt.Errorf("failed to hash %s for image %s: %w", s.Files[dst], s.Repo, err)
		}
	}
	for _, dst := range sortedKeys(s.Data) {
		fmt.Fprintf(h, "\x00data %s\x00", dst)
		h.Write(s.Data[dst])
	}
	return s.Repo + ":" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Ensure builds the image unless a local image has its tag already; it returns the tag and
// whether it was reused.
func (s ScratchImage) Ensure(ctx context.Context) (tag string, reused bool, err error) {
	tag, err = s.Tag()
	if err != nil {
		return "", false, err
	}
	if _, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", tag); err == nil {
		return tag, true, nil
	}
	dir, err := os.MkdirTemp("", "keysync-image-")
	if err != nil {
		return "", false, fmt.Errorf("failed to create build context for %s: %w", tag, err)
	}
	defer os.RemoveAll(dir)
	put := func(dst string, data []byte, mode os.FileMode) error {
		p := filepath.Join(dir, "rootfs", filepath.FromSlash(dst))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, mode)
	}
	for dst, src := range s.Files {
		data, err := os.ReadFile(src)
		if err != nil {
			return "", false, fmt.Errorf("failed to read %s for image %s: %w", src, tag, err)
		}
		st, err := os.Stat(src)
		if err != nil {
			return "", false, fmt.Errorf("failed to stat %s for image %s: %w", src, tag, err)
		}
		if err := put(dst, data, st.Mode().Perm()); err != nil {
			return "", false, fmt.Errorf("failed to stage %s for image %s: %w", dst, tag, err)
		}
	}
	for dst, data := range s.Data {
		if err := put(dst, data, 0o644); err != nil {
			return "", false, fmt.Errorf("failed to stage %s for image %s: %w", dst, tag, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(s.dockerfile()), 0o644); err != nil {
		return "", false, fmt.Errorf("failed to write Dockerfile for %s: %w", tag, err)
	}
	if _, err := docker(ctx, nil, "build", "-q", "-t", tag, dir); err != nil {
		return "", false, fmt.Errorf("failed to build image %s: %w", tag, err)
	}
	return tag, false, nil
}

// registryConfig is Debian docker-registry's configuration inside the lab's registry container.
const registryConfig = `version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
`

// RegistryImage is the lab registry: Debian's docker-registry binary (dynamically linked: its
// loader and libc come along) FROM scratch.
func RegistryImage() ScratchImage {
	return ScratchImage{
		Repo: "keysync/kind-registry",
		Files: map[string]string{
			"/usr/bin/docker-registry":        "/usr/bin/docker-registry",
			"/lib/x86_64-linux-gnu/libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
			"/lib64/ld-linux-x86-64.so.2":     "/lib64/ld-linux-x86-64.so.2",
		},
		Data:       map[string][]byte{"/etc/docker/registry/config.yml": []byte(registryConfig), "/var/lib/registry/.keep": nil},
		Entrypoint: []string{"/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"},
	}
}
