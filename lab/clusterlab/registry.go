package clusterlab

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/keysync-dev/keysync/fixtures/manifest"
	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/internal/pullsecret"
	"github.com/keysync-dev/keysync/internal/registryauth"
)

// repoPrefix is a repository path prefix: lowercase path components as the distribution spec
// allows them, separated by '/'.
var repoPrefix = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)

// registryTarget is --registry and --node-registry parsed.
type registryTarget struct {
	// push is host[:port] the runner pushes to; node is host[:port] the nodes pull from
	// (push unless --node-registry).
	push, node string
	// prefix is the repository prefix under which every pushed image goes ("" none).
	prefix string
}

// parseRegistry checks --registry host[:port][/prefix] and --node-registry host[:port]: no
// scheme, a valid host, a lowercase repository prefix only on --registry.
func parseRegistry(registry, nodeRegistry string) (registryTarget, error) {
	if strings.Contains(registry, "://") {
		return registryTarget{}, fmt.Errorf("--registry %q has a scheme: give host[:port][/prefix] as in an image reference", registry)
	}
	host, prefix, _ := strings.Cut(registry, "/")
	if err := pullsecret.ValidateServer(host); err != nil {
		return registryTarget{}, fmt.Errorf("--registry: %w", err)
	}
	if prefix != "" && !repoPrefix.MatchString(prefix) {
		return registryTarget{}, fmt.Errorf("--registry %q: the repository prefix %q must be lowercase path components (a-z, 0-9, '.', '_', '-') separated by '/'", registry, prefix)
	}
	t := registryTarget{push: host, node: host, prefix: prefix}
	if nodeRegistry != "" {
		if strings.Contains(nodeRegistry, "/") && !strings.Contains(nodeRegistry, "://") {
			return registryTarget{}, fmt.Errorf("--node-registry %q has a path: give host[:port] only; the repository prefix goes on --registry", nodeRegistry)
		}
		if err := pullsecret.ValidateServer(nodeRegistry); err != nil {
			return registryTarget{}, fmt.Errorf("--node-registry: %w", err)
		}
		t.node = nodeRegistry
	}
	return t, nil
}

// repo returns the repository name for repo under the prefix.
func (t registryTarget) repo(repo string) string {
	if t.prefix == "" {
		return repo
	}
	return t.prefix + "/" + repo
}

// nodeRef turns a reference made with the push address into the one the nodes pull.
func (t registryTarget) nodeRef(ref string) string {
	if rest, ok := strings.CutPrefix(ref, t.push+"/"); ok {
		return t.node + "/" + rest
	}
	return ref
}

// readCA checks --ca-file: readable, at least one PEM certificate. It returns the bytes.
func readCA(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: failed to read the registry's CA: %w", err)
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("--ca-file %s: a CERTIFICATE block does not parse: %w", path, err)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", path)
	}
	return data, nil
}

// registryAuth turns --creds or --authfile into the credentials for the push and node hosts;
// nil when neither is given. An auth file must parse and name the push host.
func registryAuth(creds, authFile string, t registryTarget) (registryauth.File, error) {
	switch {
	case creds != "" && authFile != "":
		return nil, errors.New("--creds and --authfile exclude each other")
	case creds != "":
		c, err := registryauth.ParseCredentials(creds)
		if err != nil {
			return nil, fmt.Errorf("--creds: %w", err)
		}
		return registryauth.Same(hosts(t), c), nil
	case authFile != "":
		f, err := registryauth.Load(authFile)
		if err != nil {
			return nil, fmt.Errorf("--authfile: %w", err)
		}
		c, ok := f[t.push]
		if !ok {
			return nil, fmt.Errorf("--authfile %s has no entry for the registry %s (it has %s)", authFile, t.push, strings.Join(f.Hosts(), ", "))
		}
		out := registryauth.File{}
		for h, v := range f {
			out[h] = v
		}
		if _, ok := out[t.node]; !ok {
			out[t.node] = c
		}
		return out, nil
	}
	return nil, nil
}

func hosts(t registryTarget) []string {
	if t.node == t.push {
		return []string{t.push}
	}
	return []string{t.push, t.node}
}

// writeRegistryFiles writes what later steps need under out: the auth file (mode 0600) and
// the CA as certs/ca.crt (a containers-certs.d directory). It returns their paths ("" when
// not given).
func writeRegistryFiles(out string, auth registryauth.File, ca []byte) (authPath, certDir string, err error) {
	if auth != nil {
		authPath = filepath.Join(out, "registry-auth.json")
		if err := auth.Write(authPath); err != nil {
			return "", "", err
		}
	}
	if ca != nil {
		certDir = filepath.Join(out, "registry-certs")
		if err := os.MkdirAll(certDir, 0o755); err != nil {
			return "", "", fmt.Errorf("failed to create %s: %w", certDir, err)
		}
		if err := atomicfile.Write(filepath.Join(certDir, "ca.crt"), ca, 0o644); err != nil {
			return "", "", fmt.Errorf("failed to write the registry's CA: %w", err)
		}
	}
	return authPath, certDir, nil
}

// rewriteManifest points the manifest's references at the node address.
func rewriteManifest(path string, t registryTarget) error {
	if t.node == t.push {
		return nil
	}
	m, err := manifest.Load(path)
	if err != nil {
		return err
	}
	for i := range m.Variants {
		m.Variants[i].Reference = t.nodeRef(m.Variants[i].Reference)
		m.Variants[i].PlainTwin = t.nodeRef(m.Variants[i].PlainTwin)
	}
	m.Registry = t.node
	return manifest.Write(path, m)
}
