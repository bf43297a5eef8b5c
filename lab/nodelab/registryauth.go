package nodelab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/internal/registryauth"
	"github.com/keysync-dev/keysync/lab"
)

// registryHosts are the host names that reach the lab registry (registryNames).
func (r *runner) registryHosts() []string {
	return append([]string{r.st.Registry}, registryNames(r.st.Registry)...)
}

// registryNames are the other host names of the registry at addr (127.0.0.1:PORT): the
// loopback's own name, localhost:PORT, so that the registry has two host names like a region's
// registry without touching the host's resolver. They are real names, not registries.conf
// rewrites: containers/image sends a pull's credentials only to the host the image names.
func registryNames(addr string) []string {
	if port, ok := strings.CutPrefix(addr, "127.0.0.1:"); ok {
		return []string{"localhost:" + port}
	}
	return nil
}

// ensureRegistryAuth makes the registry's htpasswd and the lab's auth file agree on one
// password for user iamapikey: the one in the auth file when it has one (so up is
// idempotent), a new random one when it has none or rotate is set. The htpasswd file is
// rewritten only when its hash does not match; the registry rereads it on change, so a
// rotation needs no restart.
func (r *runner) ensureRegistryAuth(rotate bool) (string, error) {
	if err := os.MkdirAll(r.l.RegistryDir(), 0o755); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", r.l.RegistryDir(), err)
	}
	creds, note := registryauth.Credentials{}, "kept the password"
	if f, err := registryauth.Load(r.l.RegistryAuthFile()); err == nil && !rotate {
		if c, err := f.Single(); err == nil && c.Username == registryauth.Username {
			creds = c
		}
	}
	if creds.Password == "" {
		pw, err := registryauth.NewPassword()
		if err != nil {
			return "", err
		}
		creds, note = registryauth.Credentials{Username: registryauth.Username, Password: pw}, "new password"
	}
	if !htpasswdMatches(r.l.RegistryHtpasswd(), creds) {
		data, err := registryauth.Htpasswd(creds)
		if err != nil {
			return "", err
		}
		if err := atomicfile.Write(r.l.RegistryHtpasswd(), data, 0o600); err != nil {
			return "", fmt.Errorf("failed to write the registry's htpasswd: %w", err)
		}
	}
	if err := registryauth.Same(r.registryHosts(), creds).Write(r.l.RegistryAuthFile()); err != nil {
		return "", err
	}
	return note, nil
}

// htpasswdMatches reports whether the htpasswd file at path has exactly one entry, for c.
func htpasswdMatches(path string, c registryauth.Credentials) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	line := string(bytes.TrimSpace(data))
	user, hash, ok := strings.Cut(line, ":")
	if !ok || strings.Contains(line, "\n") || user != c.Username {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(c.Password)) == nil
}

// registryHealth passes when the registry answers /v2/ with 200 to the lab's credentials.
func (r *runner) registryHealth() lab.HealthCheck {
	return func(ctx context.Context) error {
		f, err := registryauth.Load(r.l.RegistryAuthFile())
		if err != nil {
			return err
		}
		return lab.CheckHTTP(ctx, f.Client(r.client), "http://"+r.st.Registry+"/v2/")
	}
}

// registryClient is the lab's HTTP client with the registry's credentials.
func (r *runner) registryClient() (*http.Client, error) {
	f, err := registryauth.Load(r.l.RegistryAuthFile())
	if err != nil {
		return nil, err
	}
	return f.Client(r.client), nil
}

// rotateCmd is ROTATE_REGISTRY_PASSWORD_CMD: this lab's `keysync lab rotate-registry-password`.
func (r *runner) rotateCmd() string {
	return strings.Join([]string{filepath.Join(r.opts.BinDir, "keysync"), "lab", "rotate-registry-password",
		"--kind", lab.KindNode, "--work-dir", r.l.Dir}, " ")
}

// RotateRegistryPassword implements lab.RegistryRotator: a new password in the registry's
// htpasswd (reread by the running registry) and in the auth file.
func (n *Lab) RotateRegistryPassword(context.Context) error {
	r, err := n.runner()
	if err != nil {
		return err
	}
	if r.st.Registry == "" {
		return errors.New("failed to rotate the registry password: the node lab was never brought up (no registry address in state.json)")
	}
	if _, err := r.ensureRegistryAuth(true); err != nil {
		return fmt.Errorf("failed to rotate the registry password: %w", err)
	}
	return nil
}
