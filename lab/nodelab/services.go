package nodelab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/internal/registry"
	"github.com/keysync-dev/keysync/internal/registryauth"
	"github.com/keysync-dev/keysync/lab/labconfig"
)

// Seeded mockkp identity of the lab: fixed, so env files and Secrets stay valid across ups.
const (
	KPInstanceID = "6d1f3a52-7c1e-4b8e-9a41-1e0c5b2d7f10"
	KPRootKeyID  = "0f4c8b9e-2a6d-4d3f-8e17-5b9a1c7e3d22"
	// KPAPIKey is the mock's API key; it guards nothing outside the lab.
	KPAPIKey = "keysync-node-lab-apikey"
	// catatonit is Debian's static init with a pause mode (-P).
	catatonitPath = "/usr/bin/catatonit"
	conmonPath    = "/usr/bin/conmon"
	cniPluginDir  = "/usr/lib/cni"
)

// startRegistry runs Debian's docker-registry on the lab's storage (images survive restarts).
func (r *runner) startRegistry(ctx context.Context) (string, error) {
	p := r.process(componentNamed("registry"))
	_, ours := p.Running()
	addr, err := r.port(&r.st.Registry, ours)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(r.l.RegistryStorage(), 0o755); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", r.l.RegistryStorage(), err)
	}
	authNote, err := r.ensureRegistryAuth(false)
	if err != nil {
		return "", err
	}
	cfg := registry.Config(r.l.RegistryStorage(), addr, r.l.RegistryHtpasswd())
	if err := atomicfile.Write(r.l.RegistryConfig(), []byte(cfg), 0o644); err != nil {
		return "", fmt.Errorf("failed to write the registry config: %w", err)
	}
	p.Path, p.Args = registry.DefaultBinary, []string{"serve", r.l.RegistryConfig()}
	p.Fingerprint = fingerprint(p.Path, cfg)
	note, err := ensure(ctx, p)
	if err != nil {
		return "", err
	}
	return note + ", " + addr + ", user " + registryauth.Username + " (" + authNote + ")", nil
}

func (r *runner) startMockKP(ctx context.Context) (string, error) {
	p := r.process(componentNamed("mockkp"))
	_, ours := p.Running()
	addr, err := r.port(&r.st.MockKP, ours)
	if err != nil {
		return "", err
	}
	admin, err := r.port(&r.st.MockKPAdmin, ours)
	if err != nil {
		return "", err
	}
	tlsAddr, err := r.publicAddr(&r.st.MockKPTLS, ours)
	if err != nil {
		return "", err
	}
	ca, cert, err := r.publicNames(tlsAddr)
	if err != nil {
		return "", err
	}
	data, err := labconfig.MockKPSeedJSON(labconfig.MockKPIdentity{InstanceID: KPInstanceID, APIKey: KPAPIKey, RootKeyID: KPRootKeyID,
		KMSRootKeyID: KPKMSRootKeyID})
	if err != nil {
		return "", err
	}
	seedPath := filepath.Join(r.l.MockKPDir(), "seed.json")
	if err := atomicfile.Write(seedPath, data, 0o600); err != nil {
		return "", fmt.Errorf("failed to write mockkp seed: %w", err)
	}
	p.Path = filepath.Join(r.opts.BinDir, "mockkp")
	p.Args = []string{"--addr", addr, "--admin-addr", admin, "--seed", seedPath,
		"--state", filepath.Join(r.l.MockKPDir(), "state.json"),
		"--tls-addr", tlsAddr, "--tls-cert", ca.Cert, "--tls-key", ca.Key}
	p.Fingerprint = fingerprint(append([]string{p.Path, string(data), string(cert)}, p.Args...)...)
	note, err := ensure(ctx, p)
	if err != nil {
		return "", err
	}
	return note + ", public names at " + tlsAddr, nil
}

func (r *runner) startCRIO(ctx context.Context) (string, error) {
	runtimePath, err := exec.LookPath("runc")
	if err != nil {
		return "", fmt.Errorf("failed to find runc: %w", err)
	}
	if r.wrap {
		runtimePath = filepath.Join(r.opts.BinDir, "keysync-runtime-wrapper")
	}
	cfg := crioConfig{layout: r.l, pinns: filepath.Join(r.opts.CRIOBinDir, "pinns"), runtimePath: runtimePath,
		monitorPath: conmonPath, registry: r.st.Registry, pauseImage: r.pauseImage(), cniPluginDir: cniPluginDir}
	files, err := cfg.write()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(r.l.SyncedDir(), 0o755); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", r.l.SyncedDir(), err)
	}
	p := r.process(componentNamed("crio"))
	p.Path, p.Args = filepath.Join(r.opts.CRIOBinDir, "crio"), cfg.args()
	p.Fingerprint = fingerprint(string(files.DropIn), string(files.RegistriesConf), string(files.Policy), strings.Join(cfg.args(), " "), p.Path)
	note, err := ensure(ctx, p)
	if err != nil {
		return "", err
	}
	if r.wrap {
		note += ", runtime wrapper"
	}
	return note, nil
}

func (r *runner) startSyncer(ctx context.Context) (string, error) {
	p := r.process(componentNamed("syncer"))
	r.st.Synchronizer = r.opts.Synchronizer
	if err := r.saveState(); err != nil {
		return "", err
	}
	if r.opts.Synchronizer == SynchronizerNone {
		return r.stopSynchronizer(ctx, p)
	}
	_, ours := p.Running()
	metrics, err := r.port(&r.st.SyncerMetrics, ours)
	if err != nil {
		return "", err
	}
	probe, err := r.port(&r.st.SyncerProbe, ours)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(r.l.StagingDir(), 0o700); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", r.l.StagingDir(), err)
	}
	kubeconfig, err := os.ReadFile(r.l.Kubeconfig())
	if err != nil {
		return "", fmt.Errorf("failed to read kubeconfig: %w", err)
	}
	if foreign(r.opts.Synchronizer) {
		return r.startForeign(ctx, p, kubeconfig)
	}
	public, err := r.publicNamesFor(p)
	if err != nil {
		return "", err
	}
	p.Path = filepath.Join(r.opts.BinDir, "keysync-syncer")
	p.Args = []string{"--kubeconfig", r.l.Kubeconfig(), "--keys-dir", r.l.SyncedDir(), "--staging-dir", r.l.StagingDir(),
		"--node-name", NodeName, "--namespace", Namespace, "--metrics-addr", metrics, "--probe-addr", probe,
		// The lab's mockkp serves plain HTTP on loopback with its own token endpoint.
		"--allow-insecure-kp"}
	// A new control plane (address, token) means a new syncer.
	p.Fingerprint = fingerprint(append([]string{p.Path, string(kubeconfig), public}, p.Args...)...)
	return ensure(ctx, p)
}
