package nodelab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/internal/ociimage"
	"github.com/keysync-dev/keysync/internal/registry"
	"github.com/keysync-dev/keysync/internal/runtimewrap"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/labconfig"
)

// Seeded mockkp identity of the lab: fixed, so env files and Secrets stay valid across ups.
const (
	KPInstanceID = "6d1f3a52-7c1e-4b8e-9a41-1e0c5b2d7f10"
	KPRootKeyID  = "0f4c8b9e-2a6d-4d3f-8e17-5b9a1c7e3d22"
	// KPAPIKey is the mock's API key; it guards nothing outside the lab.
	KPAPIKey = "keysync-node-lab-apikey"
	// PauseRepo is the pause image's repository in the lab registry; its tag is PAUSE_VERSION.
	PauseRepo = "keysync/pause"
	// catatonit is Debian's static init with a pause mode (-P).
	catatonitPath = "/usr/bin/catatonit"
	conmonPath    = "/usr/bin/conmon"
	cniPluginDir  = "/usr/lib/cni"
	// defaultPauseVersion is used when PAUSE_VERSION is not in the environment.
	defaultPauseVersion = "3.10.1"
)

// state is what later ups reuse: the addresses chosen on the first up.
type state struct {
	Registry      string `json:"registry"`
	MockKP        string `json:"mockkp"`
	MockKPAdmin   string `json:"mockkpAdmin"`
	SyncerMetrics string `json:"syncerMetrics"`
	SyncerProbe   string `json:"syncerProbe"`
}

// supervisor is one run of `keysync lab node serve`.
type supervisor struct {
	opts   Options
	l      Layout
	st     state
	self   string
	reg    *registry.Registry
	cp     *controlPlane
	procs  map[string]*lab.Process
	wrap   bool
	client *http.Client
}

// Serve is the supervisor: it brings the lab up step by step (status lines on Out), writes the
// ready marker, then holds the registry and the control plane until ctx ends, and tears
// everything down in reverse order.
func Serve(ctx context.Context, opts Options) error {
	if err := opts.validate(); err != nil {
		return fmt.Errorf("invalid node lab options: %w", err)
	}
	self, err := opts.self()
	if err != nil {
		return err
	}
	s := &supervisor{opts: opts, l: Layout{Dir: opts.WorkDir}, self: self,
		procs: map[string]*lab.Process{}, client: &http.Client{Timeout: 30 * time.Second}}
	out := opts.out()
	_ = os.Remove(s.l.ReadyFile())
	_, upErr := lab.RunSteps(ctx, out, false, s.upSteps())
	if upErr == nil {
		if err := atomicfile.Write(s.l.ReadyFile(), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
			upErr = err
		} else {
			fmt.Fprintf(out, "✓ node lab up; env file %s\n", opts.EnvFile)
			<-ctx.Done()
		}
	}
	_ = os.Remove(s.l.ReadyFile())
	// Tear down with a fresh context: ctx is done (signal) or the bring-up failed.
	downCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
	defer cancel()
	fmt.Fprintln(out, "• tearing the node lab down")
	_, downErr := lab.RunSteps(downCtx, out, true, s.downSteps())
	if upErr != nil {
		// The CLI prints the error (once) on stderr, which is this log too.
		return upErr
	}
	return downErr
}

func (s *supervisor) upSteps() []lab.Step {
	return []lab.Step{
		{Name: "Checking the host", Run: s.checkHost},
		{Name: "Starting the registry", Run: s.startRegistry},
		{Name: "Starting mockkp", Run: s.startMockKP},
		{Name: "Pushing the pause image", Run: s.pushPause},
		{Name: "Starting CRI-O", Run: s.startCRIO},
		{Name: "Starting etcd and kube-apiserver", Run: s.startControlPlane},
		{Name: "Starting the synchronizer", Run: s.startSyncer},
		{Name: "Pushing the fixtures", Run: s.pushFixtures},
		{Name: "Writing the env file", Run: s.writeEnv},
	}
}

// downSteps are the tear-down steps for what is running (only those).
func (s *supervisor) downSteps() []lab.Step {
	steps := teardownSteps(s.l, procNames())
	if s.cp != nil {
		steps = append(steps, lab.Step{Name: "Stopping etcd and kube-apiserver", Run: func(context.Context) (string, error) {
			return "", s.cp.Stop()
		}})
	}
	if s.reg != nil {
		steps = append(steps, lab.Step{Name: "Stopping the registry", Run: func(context.Context) (string, error) {
			return "", s.reg.Stop()
		}})
	}
	return steps
}

func (s *supervisor) checkHost(ctx context.Context) (string, error) {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("the node lab runs CRI-O and needs root"))
	}
	need := []string{
		filepath.Join(s.opts.CRIOBinDir, "crio"), filepath.Join(s.opts.CRIOBinDir, "pinns"),
		filepath.Join(s.opts.K8sBinDir, "kube-apiserver"), filepath.Join(s.opts.K8sBinDir, "etcd"),
		filepath.Join(s.opts.BinDir, "mockkp"), filepath.Join(s.opts.BinDir, "keysync-syncer"),
		conmonPath, catatonitPath, registry.DefaultBinary, filepath.Join(cniPluginDir, "loopback"),
	}
	wrap, err := runtimewrap.Needed("/proc/self/status")
	if err != nil {
		errs = append(errs, err)
	}
	s.wrap = wrap
	if wrap {
		need = append(need, filepath.Join(s.opts.BinDir, "keysync-runtime-wrapper"))
	}
	for _, p := range need {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm()&0o111 == 0 {
			errs = append(errs, fmt.Errorf("missing executable %s (make deps / make crio / make build)", p))
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		errs = append(errs, errors.New("missing runc (make deps)"))
	}
	if fs, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(fs), "\toverlay\n") {
		errs = append(errs, errors.New("the kernel lacks overlayfs (modprobe overlay)"))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	for _, d := range []string{s.l.LogDir(), s.l.RunDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("failed to create %s: %w", d, err)
		}
	}
	if err := s.loadState(); err != nil {
		return "", err
	}
	if wrap {
		return "runtime wrapper: CapBnd lacks CAP_SYS_RESOURCE", nil
	}
	return "", nil
}

func (s *supervisor) loadState() error {
	data, err := os.ReadFile(s.l.StateFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to read lab state: %w", err)
	}
	if err := json.Unmarshal(data, &s.st); err != nil {
		// A damaged state only costs new ports.
		s.st = state{}
	}
	return nil
}

func (s *supervisor) saveState() error {
	data, err := json.MarshalIndent(s.st, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode lab state: %w", err)
	}
	if err := atomicfile.Write(s.l.StateFile(), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("failed to save lab state: %w", err)
	}
	return nil
}

// port returns *addr when it is set and either in use by the lab's own running process
// (ours) or free, and a new free loopback address otherwise; it records the choice.
func (s *supervisor) port(addr *string, ours bool) (string, error) {
	if *addr != "" && (ours || portFree(*addr)) {
		return *addr, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("failed to find a free port: %w", err)
	}
	*addr = l.Addr().String()
	l.Close()
	return *addr, s.saveState()
}

func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func (s *supervisor) startRegistry(ctx context.Context) (string, error) {
	addr, err := s.port(&s.st.Registry, false)
	if err != nil {
		return "", err
	}
	reg, err := registry.Start(ctx, registry.Options{Dir: s.l.RegistryDir(), Addr: addr, StartTimeout: 30 * time.Second,
		Logger: s.opts.logger()})
	if err != nil && strings.Contains(err.Error(), "address already in use") {
		s.st.Registry = ""
		if addr, err = s.port(&s.st.Registry, false); err != nil {
			return "", err
		}
		reg, err = registry.Start(ctx, registry.Options{Dir: s.l.RegistryDir(), Addr: addr, StartTimeout: 30 * time.Second,
			Logger: s.opts.logger()})
	}
	if err != nil {
		return "", fmt.Errorf("failed to start the registry (storage %s): %w", s.l.RegistryDir(), err)
	}
	s.reg = reg
	return reg.Addr(), nil
}

func (s *supervisor) startControlPlane(ctx context.Context) (string, error) {
	cp, err := startControlPlane(ctx, s.l, s.opts.K8sBinDir, s.opts.logger())
	if err != nil {
		return "", err
	}
	s.cp = cp
	kubeconfig, err := cp.Kubeconfig()
	if err != nil {
		return "", err
	}
	if err := atomicfile.Write(s.l.Kubeconfig(), kubeconfig, 0o600); err != nil {
		return "", fmt.Errorf("failed to write kubeconfig: %w", err)
	}
	if err := cp.EnsureNamespace(ctx, Namespace); err != nil {
		return "", err
	}
	return cp.Host(), nil
}

func (s *supervisor) newProc(name, path string, args []string) *lab.Process {
	p := &lab.Process{Name: name, Path: path, Args: args, Dir: s.opts.WorkDir, LogFile: s.l.Log(name),
		PidFile: s.l.PidFile(name), StartTimeout: 60 * time.Second, StopTimeout: 30 * time.Second}
	s.procs[name] = p
	return p
}

func httpHealth(client *http.Client, url string) lab.HealthCheck {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

func reuseNote(reused bool, p *lab.Process) string {
	pid, _ := p.Running()
	if reused {
		return fmt.Sprintf("reused pid %d", pid)
	}
	return fmt.Sprintf("pid %d", pid)
}

func (s *supervisor) startMockKP(ctx context.Context) (string, error) {
	p := &lab.Process{PidFile: s.l.PidFile("mockkp")}
	_, ours := p.Running()
	addr, err := s.port(&s.st.MockKP, ours)
	if err != nil {
		return "", err
	}
	admin, err := s.port(&s.st.MockKPAdmin, ours)
	if err != nil {
		return "", err
	}
	data, err := labconfig.MockKPSeedJSON(labconfig.MockKPIdentity{InstanceID: KPInstanceID, APIKey: KPAPIKey, RootKeyID: KPRootKeyID})
	if err != nil {
		return "", err
	}
	seedPath := filepath.Join(s.l.MockKPDir(), "seed.json")
	if err := atomicfile.Write(seedPath, data, 0o600); err != nil {
		return "", fmt.Errorf("failed to write mockkp seed: %w", err)
	}
	p = s.newProc("mockkp", filepath.Join(s.opts.BinDir, "mockkp"), []string{
		"--addr", addr, "--admin-addr", admin, "--seed", seedPath, "--state", filepath.Join(s.l.MockKPDir(), "state.json")})
	p.Health = httpHealth(s.client, "http://"+addr+"/healthz")
	reused, err := p.Ensure(ctx)
	if err != nil {
		return "", err
	}
	return reuseNote(reused, p), nil
}

func pauseVersion() string {
	if v := os.Getenv("PAUSE_VERSION"); v != "" {
		return v
	}
	return defaultPauseVersion
}

func (s *supervisor) pauseImage() string {
	return s.reg.Addr() + "/" + PauseRepo + ":" + pauseVersion()
}

func (s *supervisor) pushPause(ctx context.Context) (string, error) {
	catatonit, err := ociimage.HostFile("/catatonit", catatonitPath)
	if err != nil {
		return "", fmt.Errorf("failed to build the pause image: %w", err)
	}
	catatonit.Mode = 0o755
	layer, err := ociimage.NewLayer(catatonit)
	if err != nil {
		return "", fmt.Errorf("failed to build the pause image: %w", err)
	}
	img := ociimage.Image{
		Layers:     []*ociimage.Layer{layer},
		Entrypoint: []string{"/catatonit", "-P"},
		Labels:     map[string]string{"io.k8s.keysync.pause": "catatonit"},
	}
	digest, err := img.Push(ctx, s.client, s.reg.Addr(), PauseRepo, pauseVersion())
	if err != nil {
		return "", fmt.Errorf("failed to push the pause image: %w", err)
	}
	return s.pauseImage() + "@" + digest.String()[:19], nil
}

func (s *supervisor) startCRIO(ctx context.Context) (string, error) {
	runtimePath, err := exec.LookPath("runc")
	if err != nil {
		return "", fmt.Errorf("failed to find runc: %w", err)
	}
	if s.wrap {
		runtimePath = filepath.Join(s.opts.BinDir, "keysync-runtime-wrapper")
	}
	cfg := crioConfig{layout: s.l, pinns: filepath.Join(s.opts.CRIOBinDir, "pinns"), runtimePath: runtimePath,
		monitorPath: conmonPath, registry: s.reg.Addr(), pauseImage: s.pauseImage(), cniPluginDir: cniPluginDir}
	files, err := cfg.write()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(s.l.SyncedDir(), 0o755); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", s.l.SyncedDir(), err)
	}
	p := s.newProc("crio", filepath.Join(s.opts.CRIOBinDir, "crio"), cfg.args())
	p.Fingerprint = fingerprint(string(files.DropIn), string(files.RegistriesConf), string(files.Policy), strings.Join(cfg.args(), " "), p.Path)
	p.Health = criHealth(s.l.CRISocket())
	p.StartTimeout = 90 * time.Second
	reused, err := p.Ensure(ctx)
	if err != nil {
		return "", err
	}
	note := reuseNote(reused, p)
	if s.wrap {
		note += ", runtime wrapper"
	}
	return note, nil
}

func fingerprint(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func (s *supervisor) startSyncer(ctx context.Context) (string, error) {
	p := &lab.Process{PidFile: s.l.PidFile("syncer")}
	_, ours := p.Running()
	metrics, err := s.port(&s.st.SyncerMetrics, ours)
	if err != nil {
		return "", err
	}
	probe, err := s.port(&s.st.SyncerProbe, ours)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(s.l.StagingDir(), 0o700); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", s.l.StagingDir(), err)
	}
	kubeconfig, err := os.ReadFile(s.l.Kubeconfig())
	if err != nil {
		return "", fmt.Errorf("failed to read kubeconfig: %w", err)
	}
	p = s.newProc("syncer", filepath.Join(s.opts.BinDir, "keysync-syncer"), []string{
		"--kubeconfig", s.l.Kubeconfig(), "--keys-dir", s.l.SyncedDir(), "--staging-dir", s.l.StagingDir(),
		"--node-name", NodeName, "--namespace", Namespace, "--metrics-addr", metrics, "--probe-addr", probe})
	// A new control plane (new certificates) means a new syncer.
	p.Fingerprint = fingerprint(append(append([]string{p.Path}, p.Args...), string(kubeconfig))...)
	// /readyz: the informer has synced, so the keys tree matches the Secrets.
	p.Health = httpHealth(s.client, "http://"+probe+"/readyz")
	reused, err := p.Ensure(ctx)
	if err != nil {
		return "", err
	}
	return reuseNote(reused, p), nil
}

// fixturesManifest is the part of the fixtures manifest the lab checks for reuse.
type fixturesManifest struct {
	Variants []struct {
		Name      string `json:"name"`
		Reference string `json:"reference"`
	} `json:"variants"`
}

func (s *supervisor) pushFixtures(ctx context.Context) (string, error) {
	if n, ok := s.fixturesPresent(ctx); ok {
		return fmt.Sprintf("reused %d variants", n), nil
	}
	logPath := s.l.Log("fixtures")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", fmt.Errorf("failed to open %s: %w", logPath, err)
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, s.self, "fixtures", "push", "--registry", s.reg.Addr(), "--tls-verify=false",
		"--out", s.l.FixturesDir(), "--source-dir", s.opts.sourceDir())
	cmd.Dir = s.opts.sourceDir()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("failed to push the fixtures (%s fixtures push, log %s): %w; last lines:\n%s",
			s.self, logPath, err, lastLines(logPath))
	}
	n, ok := s.fixturesPresent(ctx)
	if !ok {
		return "", fmt.Errorf("fixtures pushed but %s does not list them in the registry (log %s)", s.l.FixturesManifest(), logPath)
	}
	return fmt.Sprintf("%d variants", n), nil
}

func lastLines(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return lab.LastLines(data, 15)
}

// fixturesPresent reports whether the manifest exists, names this registry and the registry
// serves every variant's manifest.
func (s *supervisor) fixturesPresent(ctx context.Context) (int, bool) {
	data, err := os.ReadFile(s.l.FixturesManifest())
	if err != nil {
		return 0, false
	}
	var m fixturesManifest
	if err := json.Unmarshal(data, &m); err != nil || len(m.Variants) == 0 {
		return 0, false
	}
	for _, v := range m.Variants {
		repoTag, ok := strings.CutPrefix(v.Reference, s.reg.Addr()+"/")
		if !ok {
			return 0, false
		}
		repo, ref := repoTag, "latest"
		if i := strings.Index(repoTag, "@"); i >= 0 {
			repo, ref = repoTag[:i], repoTag[i+1:]
		} else if i := strings.LastIndex(repoTag, ":"); i >= 0 {
			repo, ref = repoTag[:i], repoTag[i+1:]
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+s.reg.Addr()+"/v2/"+repo+"/manifests/"+ref, nil)
		if err != nil {
			return 0, false
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json")
		resp, err := s.client.Do(req)
		if err != nil {
			return 0, false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, false
		}
	}
	return len(m.Variants), true
}

func (s *supervisor) writeEnv(context.Context) (string, error) {
	kp := "http://" + s.st.MockKP
	env := lab.Env{
		Lab: lab.KindNode, Kubeconfig: s.l.Kubeconfig(), Nodes: []string{NodeName},
		CRIEndpoint: s.l.CRISocket(), KeysRoot: s.l.KeysRoot(), SyncSubdir: SyncSubdir, Registry: s.reg.Addr(),
		MockKPURL: kp, MockKPTokenURL: kp + "/identity/token", MockKPAdminURL: "http://" + s.st.MockKPAdmin,
		MockKPClusterURL: kp, MockKPClusterTokenURL: kp + "/identity/token",
		KPInstanceID: KPInstanceID, KPAPIKey: KPAPIKey, KPRootKeyID: KPRootKeyID,
		FixturesManifest: s.l.FixturesManifest(), SyncerNamespace: Namespace,
		Extra: map[string]string{"NODE_LAB_WORK_DIR": s.l.Dir, "NODE_LAB_LOGS": s.l.LogDir(),
			"CRICTL_CONFIG": s.l.path("crictl.yaml"), "PAUSE_IMAGE": s.pauseImage()},
	}
	crictl := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", s.l.CRISocket(), s.l.CRISocket())
	if err := atomicfile.Write(s.l.path("crictl.yaml"), []byte(crictl), 0o644); err != nil {
		return "", fmt.Errorf("failed to write crictl config: %w", err)
	}
	if err := lab.WriteEnv(s.opts.EnvFile, env); err != nil {
		return "", err
	}
	return s.opts.EnvFile, nil
}
