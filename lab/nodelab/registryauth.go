package nodelab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

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
// password (registryauth.Ensure): kept across ups, new on rotate.
func (r *runner) ensureRegistryAuth(rotate bool) (string, error) {
	if err := os.MkdirAll(r.l.RegistryDir(), 0o755); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", r.l.RegistryDir(), err)
	}
	_, fresh, err := registryauth.Ensure(r.l.RegistryHtpasswd(), r.l.RegistryAuthFile(), r.registryHosts(), rotate)
	if err != nil {
		return "", err
	}
	if fresh {
		return "new password", nil
	}
	return "kept the password", nil
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
