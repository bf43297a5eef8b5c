package kindlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keysync-dev/keysync/fixtures/manifest"
	"github.com/keysync-dev/keysync/internal/registryauth"
	"github.com/keysync-dev/keysync/lab"
)

// The lab registry requires credentials (htpasswd, user iamapikey, a random API-key-like
// password kept in OutDir/registry-auth.json so that up is idempotent). Its names:
//
//   - RegistryHostAddr (127.0.0.1:5001) and RegistryHostAlias: this host pushes there;
//   - RegistryPullAddr and RegistryPrivateAddr: the network aliases the nodes resolve on the
//     kind network, like the host names of one region's registry (de.icr.io,
//     private.de.icr.io). The fixtures and every pull the suites cause name them: no
//     registries.conf rewrite, so the pull's credentials reach the registry (containers/image
//     drops them on a rewrite);
//   - RegistryNodeAddr (kind-registry:5000): the lab's own images (the synchronizer's, pulled
//     as 127.0.0.1:5001/... and rewritten) with the credentials of CRI-O's global auth file
//     NodeAuthFile, which names only this host: a pull of the suites' names without
//     credentials still fails.
const (
	RegistryAlias        = "icr.keysync.test"
	RegistryPrivateAlias = "private.icr.keysync.test"
	RegistryPullAddr     = RegistryAlias + ":5000"
	RegistryPrivateAddr  = RegistryPrivateAlias + ":5000"
	// NodeAuthFile is CRI-O's global_auth_file on every node (labconfig.CRIO.GlobalAuthFile).
	NodeAuthFile = "/etc/crio/lab-registry-auth.json"
)

// registryHosts are the hosts the lab's auth file (REGISTRY_AUTH_FILE) covers.
func registryHosts() []string {
	return []string{RegistryHostAddr, RegistryHostAlias, RegistryPullAddr, RegistryPrivateAddr}
}

// RegistryAuthDir holds the registry's htpasswd, mounted into the registry container at /auth.
func (l *Lab) RegistryAuthDir() string { return filepath.Join(l.Opts.OutDir, "registry-auth") }

// RegistryAuthFile is the lab's containers-auth.json (mode 0600).
func (l *Lab) RegistryAuthFile() string { return filepath.Join(l.Opts.OutDir, "registry-auth.json") }

// DockerConfigDir is a docker --config directory whose config.json holds the registry's
// credentials (docker push of the synchronizer image; the user's own docker config is left
// alone).
func (l *Lab) DockerConfigDir() string { return filepath.Join(l.Opts.OutDir, "docker-config") }

// ensureRegistryAuth writes the htpasswd, the auth file and the docker config for one kept
// (or, with rotate, new) password.
func (l *Lab) ensureRegistryAuth(rotate bool) (registryauth.Credentials, bool, error) {
	if err := os.MkdirAll(l.RegistryAuthDir(), 0o755); err != nil {
		return registryauth.Credentials{}, false, fmt.Errorf("failed to create %s: %w", l.RegistryAuthDir(), err)
	}
	c, fresh, err := registryauth.Ensure(filepath.Join(l.RegistryAuthDir(), "htpasswd"), l.RegistryAuthFile(), registryHosts(), rotate)
	if err != nil {
		return registryauth.Credentials{}, false, err
	}
	if err := os.MkdirAll(l.DockerConfigDir(), 0o700); err != nil {
		return registryauth.Credentials{}, false, fmt.Errorf("failed to create %s: %w", l.DockerConfigDir(), err)
	}
	if err := registryauth.Same(registryHosts(), c).Write(filepath.Join(l.DockerConfigDir(), "config.json")); err != nil {
		return registryauth.Credentials{}, false, err
	}
	return c, fresh, nil
}

// installNodeAuth writes NodeAuthFile (credentials for RegistryNodeAddr only) into nodes,
// through docker exec's stdin: never on a command line.
func installNodeAuth(ctx context.Context, nodes []string, c registryauth.Credentials) error {
	doc, err := registryauth.Same([]string{RegistryNodeAddr}, c).Marshal()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		script := "umask 077 && cat > " + NodeAuthFile + ".tmp && mv " + NodeAuthFile + ".tmp " + NodeAuthFile
		if _, err := docker(ctx, bytes.NewReader(doc), "exec", "-i", n, "sh", "-c", script); err != nil {
			errs = append(errs, fmt.Errorf("failed to install the registry credentials on node %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// registryEnv records the registry's names and credentials in the env file.
func (l *Lab) registryEnv() {
	l.Env.Registry, l.Env.RegistryPush = RegistryPullAddr, RegistryHostAddr
	l.Env.RegistryAuthFile = l.RegistryAuthFile()
	if !l.Env.Has(lab.CapRegistryAuth) {
		l.Env.Capabilities = append(l.Env.Capabilities, lab.CapRegistryAuth)
	}
	if l.Opts.Keysync != "" {
		l.Env.RotateRegistryPasswordCmd = strings.Join([]string{l.Opts.Keysync, "lab", "rotate-registry-password", "--kind", lab.KindKind,
			"--name", l.Opts.Name, "--out", l.Opts.OutDir, "--lab-env", l.Opts.EnvPath}, " ")
	}
}

// RotateRegistryPassword implements lab.RegistryRotator: a new password in the registry's
// htpasswd (reread by the running registry), the auth file, the docker config and every
// node's NodeAuthFile.
func (l *Lab) RotateRegistryPassword(ctx context.Context) error {
	if err := l.loadEnv(); err != nil {
		return err
	}
	c, _, err := l.ensureRegistryAuth(true)
	if err != nil {
		return fmt.Errorf("failed to rotate the registry password: %w", err)
	}
	if err := installNodeAuth(ctx, l.Env.Nodes, c); err != nil {
		return fmt.Errorf("failed to rotate the registry password: %w", err)
	}
	return nil
}

// nodeAuth installs the current credentials on one node (a node add-node creates).
func (l *Lab) nodeAuth(ctx context.Context, node string) error {
	f, err := registryauth.Load(l.RegistryAuthFile())
	if err != nil {
		return err
	}
	c, err := f.Single()
	if err != nil {
		return err
	}
	return installNodeAuth(ctx, []string{node}, c)
}

// pullRefs points the fixtures manifest's references at RegistryPullAddr (they were pushed
// through RegistryHostAddr).
func pullRefs(path string) error {
	m, err := manifest.Load(path)
	if err != nil {
		return err
	}
	re := func(ref string) string {
		if rest, ok := strings.CutPrefix(ref, RegistryHostAddr+"/"); ok {
			return RegistryPullAddr + "/" + rest
		}
		return ref
	}
	for i := range m.Variants {
		m.Variants[i].Reference = re(m.Variants[i].Reference)
		m.Variants[i].PlainTwin = re(m.Variants[i].PlainTwin)
	}
	m.Registry = RegistryPullAddr
	return manifest.Write(path, m)
}
