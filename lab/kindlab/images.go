package kindlab

import "github.com/keysync-dev/keysync/internal/ociimage"

// RegistryRepo is the local repository of the lab registry's image.
const RegistryRepo = "keysync/kind-registry"

// registryConfig is Debian docker-registry's configuration inside the lab's registry container:
// basic authentication against /auth/htpasswd (the lab's RegistryAuthDir, mounted; the
// registry rereads it when it changes).
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
auth:
  htpasswd:
    realm: keysync
    path: /auth/htpasswd
`

// RegistryImage is the lab registry: Debian's docker-registry binary (dynamically linked: its
// loader and libc come along) FROM scratch, with its config and an empty /var/lib/registry.
func RegistryImage() (ociimage.Image, error) {
	return hostImage(map[string]string{
		"/usr/bin/docker-registry":        "/usr/bin/docker-registry",
		"/lib/x86_64-linux-gnu/libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
		"/lib64/ld-linux-x86-64.so.2":     "/lib64/ld-linux-x86-64.so.2",
	}, []ociimage.Entry{
		ociimage.File("/etc/docker/registry/config.yml", 0o644, []byte(registryConfig)),
		ociimage.Directory("/var/lib/registry", 0o755),
	}, "/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml")
}

// hostImage is a one-layer image FROM scratch: host files (path in the image → host path, with
// their modes), then extra entries, and the entrypoint.
func hostImage(files map[string]string, extra []ociimage.Entry, entrypoint ...string) (ociimage.Image, error) {
	entries, err := ociimage.HostFiles(files)
	if err != nil {
		return ociimage.Image{}, err
	}
	layer, err := ociimage.NewLayer(append(entries, extra...)...)
	if err != nil {
		return ociimage.Image{}, err
	}
	return ociimage.Image{Layers: []*ociimage.Layer{layer}, Entrypoint: entrypoint}, nil
}
