package conformance

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keysync-dev/keysync/internal/pullsecret"
	"github.com/keysync-dev/keysync/internal/registryauth"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// AuthPuller pulls and runs with explicit registry credentials: authFile is a
// containers-auth.json document (nil: no credentials), passed to the node agent on its stdin
// (nodedriver.FlagAuthStdin). The built-in node drivers are AuthPullers through
// nodedriver.Agent.
type AuthPuller interface {
	PullImageAuth(ctx context.Context, node, ref string, authFile []byte) error
	RunImageArgsAuth(ctx context.Context, node, ref string, args []string, authFile []byte) (string, error)
}

// withRegistryAuth wraps base so that its pulls and runs send the lab registry's credentials,
// read from REGISTRY_AUTH_FILE on every call (a rotation rewrites it during the run). Without
// capability registry-auth, or for a base that cannot send credentials, base is returned as
// it is and the AuthPuller is nil.
func withRegistryAuth(env lab.Env, base nodedriver.Driver) (AuthPuller, nodedriver.Driver) {
	ap, ok := base.(AuthPuller)
	if !ok {
		return nil, base
	}
	if !env.Has(lab.CapRegistryAuth) || env.RegistryAuthFile == "" {
		return ap, base
	}
	return ap, &authDriver{Driver: base, ap: ap, authFile: env.RegistryAuthFile}
}

// authDriver is a node driver whose pulls carry the lab registry's credentials.
type authDriver struct {
	nodedriver.Driver
	ap       AuthPuller
	authFile string
}

var (
	_ nodedriver.ArgsRunner = (*authDriver)(nil)
	_ nodedriver.Auditor    = (*authDriver)(nil)
	_ nodedriver.Watcher    = (*authDriver)(nil)
)

// WatchKeys implements nodedriver.Watcher through the base driver: the watch pulls nothing.
// Without it the wrapper would hide the tree watch of every lab with registry-auth.
func (d *authDriver) WatchKeys(ctx context.Context, node string, dur time.Duration, fn func(nodedriver.WatchEvent)) error {
	return nodedriver.WatchKeys(ctx, d.Driver, node, dur, fn)
}

func (d *authDriver) auth() ([]byte, error) {
	data, err := os.ReadFile(d.authFile)
	if err != nil {
		return nil, fmt.Errorf("failed to read the lab's registry auth file (REGISTRY_AUTH_FILE): %w", err)
	}
	return data, nil
}

// PullImage implements nodedriver.Driver with the lab's credentials.
func (d *authDriver) PullImage(ctx context.Context, node, ref string) error {
	auth, err := d.auth()
	if err != nil {
		return err
	}
	return d.ap.PullImageAuth(ctx, node, ref, auth)
}

// RunImage implements nodedriver.Driver with the lab's credentials.
func (d *authDriver) RunImage(ctx context.Context, node, ref string) (string, error) {
	return d.RunImageArgs(ctx, node, ref, nil)
}

// RunImageArgs implements nodedriver.ArgsRunner with the lab's credentials.
func (d *authDriver) RunImageArgs(ctx context.Context, node, ref string, args []string) (string, error) {
	auth, err := d.auth()
	if err != nil {
		return "", err
	}
	return d.ap.RunImageArgsAuth(ctx, node, ref, args, auth)
}

// AuditKeys implements nodedriver.Auditor when the base driver does.
func (d *authDriver) AuditKeys(ctx context.Context, node string) ([]nodedriver.AuditEntry, error) {
	if a, ok := d.Driver.(nodedriver.Auditor); ok {
		return a.AuditKeys(ctx, node)
	}
	return nil, fmt.Errorf("node driver %s cannot audit keys: %w", d.Name(), nodedriver.ErrUnsupported)
}

// Close closes the base driver when it has Close.
func (d *authDriver) Close() error {
	if cl, ok := d.Driver.(interface{ Close() error }); ok {
		return cl.Close()
	}
	return nil
}

// registryAuth reads the lab's auth file now.
func (c *Context) registryAuth() (registryauth.File, error) {
	if c.Lab.RegistryAuthFile == "" {
		return nil, fmt.Errorf("the lab env file names no REGISTRY_AUTH_FILE")
	}
	return registryauth.Load(c.Lab.RegistryAuthFile)
}

// pullSecretFor builds the runbook's pull Secret (internal/pullsecret: user iamapikey, every
// host name of the registry) for the credentials in f, labelled as the run's.
func (c *Context) pullSecretFor(ns, short string, f registryauth.File) (*corev1.Secret, error) {
	cred, err := f.Single()
	if err != nil {
		return nil, err
	}
	if cred.Username != pullsecret.Username {
		return nil, fmt.Errorf("the lab's registry user is %q, the runbook's pull Secrets are for %q", cred.Username, pullsecret.Username)
	}
	sec, err := pullsecret.Build(ns, c.nameFor(short), f.Hosts(), cred.Password)
	if err != nil {
		return nil, err
	}
	sec.Labels = map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRunID: c.RunID}
	return sec, nil
}

// scopePullSecret returns the feature's pull Secret in ns, creating it (from the auth file as
// it is now) on first use; it is deleted when the feature ends.
func (c *Context) scopePullSecret(ctx context.Context, t T, s *scope, ns string) string {
	t.Helper()
	if name, ok := s.pullSecrets[ns]; ok {
		return name
	}
	f, err := c.registryAuth()
	if err != nil {
		t.Fatalf("pull Secret: %v", err)
	}
	sec, err := c.pullSecretFor(ns, "pull", f)
	if err != nil {
		t.Fatalf("pull Secret: %v", err)
	}
	s.secrets.MustCreate(ctx, t, sec)
	if s.pullSecrets == nil {
		s.pullSecrets = map[string]string{}
	}
	s.pullSecrets[ns] = sec.Name
	return sec.Name
}
