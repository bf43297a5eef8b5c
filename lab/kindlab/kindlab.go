// Package kindlab brings up keysync's kind lab: a real Kubernetes cluster (kind v0.33.0, through
// its Go API) whose nodes run CRI-O, built offline by hack/build-node-image.sh; a registry
// container on the kind network; the fixtures pushed to it; mockkp; the synchronizer addon. It
// writes the lab description (lab.Env) the suites read.
//
// Network names, as the pieces see each other:
//   - the host pushes to the registry at 127.0.0.1:5001; nodes pull kind-registry:5000, and the
//     node image's registries.conf maps 127.0.0.1:5001/... there, so one reference works for both;
//   - mockkp listens on the kind network (the synchronizer reaches it by container IP: the lab
//     runs no DNS addon) and is published on 127.0.0.1 for the suites.
package kindlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/kind/pkg/cluster"

	"github.com/keysync-dev/keysync/lab"
)

// Fixed names and ports of the lab (the node image's registries.conf names the registry).
const (
	DefaultName       = "keysync"
	KindNetwork       = "kind"
	RegistryContainer = "kind-registry"
	RegistryHostAddr  = "127.0.0.1:5001"
	RegistryNodeAddr  = "kind-registry:5000"
	MockKPContainer   = "keysync-mockkp"
	MockKPHostAddr    = "127.0.0.1:5002"
	MockKPAdminAddr   = "127.0.0.1:5003"
	SyncerNamespace   = "image-key-synchronizer"
)

// Options configure the lab.
type Options struct {
	// Name is the kind cluster's name (default "keysync").
	Name string
	// Workers is the number of worker nodes (default 1 when negative... 0 is allowed: a
	// single control-plane node).
	Workers int
	// NodeImage is the node image tag printed by hack/build-node-image.sh.
	NodeImage string
	// OutDir holds the kubeconfig and the lab's files (default <checkout>/_out/kind).
	OutDir string
	// EnvPath is where the lab description goes (default <checkout>/_out/lab.env).
	EnvPath string
	// Retain keeps the node containers when cluster creation fails (for debugging).
	Retain bool
	// Steps, when set, run after the cluster and registry are up, before the env file is
	// written (fixtures, mockkp, the addon). Each may fill in the env.
	Steps []func(*Lab) lab.Step
	// Logger receives kind's progress; Out the status lines.
	Logger *slog.Logger
	Out    io.Writer
}

func (o *Options) defaults() error {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Workers < 0 {
		return fmt.Errorf("invalid worker count %d: must be >= 0", o.Workers)
	}
	if o.OutDir == "" {
		o.OutDir = filepath.Join("_out", "kind")
	}
	if o.EnvPath == "" {
		o.EnvPath = lab.DefaultEnvFile
	}
	var err error
	if o.OutDir, err = filepath.Abs(o.OutDir); err != nil {
		return fmt.Errorf("failed to resolve output directory: %w", err)
	}
	if o.EnvPath, err = filepath.Abs(o.EnvPath); err != nil {
		return fmt.Errorf("failed to resolve env file path: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return nil
}

// Lab is a lab being brought up: the options, the kind provider and the env being filled in.
type Lab struct {
	Opts     Options
	Provider *cluster.Provider
	Env      lab.Env
}

// KubeconfigPath is the admin kubeconfig kind writes (API server on 127.0.0.1).
func (l *Lab) KubeconfigPath() string { return filepath.Join(l.Opts.OutDir, "kubeconfig") }

// New validates the options and prepares the kind provider (docker).
func New(opts Options) (*Lab, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	p := cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(kindLogger{l: opts.Logger}))
	return &Lab{Opts: opts, Provider: p, Env: lab.Env{
		Lab:             lab.KindKind,
		SyncSubdir:      "synced",
		Registry:        RegistryHostAddr, // nodes map it to the registry container too
		SyncerNamespace: SyncerNamespace,
	}}, nil
}

// Up brings the lab up, printing a status line with timing per step, and writes the env file.
// Parts already running (cluster, registry) are reused.
func (l *Lab) Up(ctx context.Context) ([]lab.StepResult, error) {
	steps := []lab.Step{
		{Name: fmt.Sprintf("Creating cluster %s (1 control plane + %d workers)", l.Opts.Name, l.Opts.Workers), Run: l.createCluster},
		{Name: "Configuring the pod network", Run: l.configureNetwork},
		{Name: "Starting the registry", Run: l.startRegistry},
	}
	for _, s := range l.Opts.Steps {
		steps = append(steps, s(l))
	}
	steps = append(steps, lab.Step{Name: "Writing the lab env file", Run: func(ctx context.Context) (string, error) {
		if err := lab.WriteEnv(l.Opts.EnvPath, l.Env); err != nil {
			return "", err
		}
		return l.Opts.EnvPath, nil
	}})
	return lab.RunSteps(ctx, l.Opts.Out, false, steps)
}

// Down removes the cluster, the registry, mockkp and the env file; it keeps going past
// failures and reports them all.
func (l *Lab) Down(ctx context.Context) ([]lab.StepResult, error) {
	steps := []lab.Step{
		{Name: "Deleting cluster " + l.Opts.Name, Run: func(ctx context.Context) (string, error) {
			names, err := l.Provider.List()
			if err != nil {
				return "", fmt.Errorf("failed to list kind clusters: %w", err)
			}
			if !slices.Contains(names, l.Opts.Name) {
				return "absent", nil
			}
			if err := l.Provider.Delete(l.Opts.Name, l.KubeconfigPath()); err != nil {
				return "", fmt.Errorf("failed to delete kind cluster %s: %w", l.Opts.Name, err)
			}
			return "", nil
		}},
		{Name: "Removing containers", Run: func(ctx context.Context) (string, error) {
			var gone []string
			for _, c := range []string{RegistryContainer, MockKPContainer} {
				ok, err := containerExists(ctx, c)
				if err != nil {
					return "", err
				}
				if ok {
					if _, err := docker(ctx, nil, "rm", "-f", "-v", c); err != nil {
						return "", err
					}
					gone = append(gone, c)
				}
			}
			if len(gone) == 0 {
				return "none", nil
			}
			return strings.Join(gone, ", "), nil
		}},
		{Name: "Removing the lab env file", Run: func(context.Context) (string, error) {
			return removeKindEnv(l.Opts.EnvPath)
		}},
	}
	return lab.RunSteps(ctx, l.Opts.Out, true, steps)
}

func (l *Lab) createCluster(ctx context.Context) (string, error) {
	note := ""
	names, err := l.Provider.List()
	if err != nil {
		return "", fmt.Errorf("failed to list kind clusters: %w", err)
	}
	if slices.Contains(names, l.Opts.Name) {
		if err := l.Provider.ExportKubeConfig(l.Opts.Name, l.KubeconfigPath(), false); err != nil {
			return "", fmt.Errorf("failed to export kubeconfig of cluster %s: %w", l.Opts.Name, err)
		}
		note = "reused"
	} else {
		cfg, err := ClusterConfig(l.Opts.Name, l.Opts.NodeImage, l.Opts.Workers)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(l.Opts.OutDir, 0o755); err != nil {
			return "", fmt.Errorf("failed to create %s: %w", l.Opts.OutDir, err)
		}
		if err := l.Provider.Create(l.Opts.Name,
			cluster.CreateWithV1Alpha4Config(cfg),
			cluster.CreateWithKubeconfigPath(l.KubeconfigPath()),
			cluster.CreateWithWaitForReady(0),
			cluster.CreateWithRetain(l.Opts.Retain),
			cluster.CreateWithDisplayUsage(false),
			cluster.CreateWithDisplaySalutation(false),
		); err != nil {
			return "", fmt.Errorf("failed to create kind cluster %s: %w", l.Opts.Name, err)
		}
	}
	nodes, err := l.Provider.ListNodes(l.Opts.Name)
	if err != nil {
		return "", fmt.Errorf("failed to list nodes of cluster %s: %w", l.Opts.Name, err)
	}
	l.Env.Nodes = nil
	for _, n := range nodes {
		l.Env.Nodes = append(l.Env.Nodes, n.String())
	}
	slices.Sort(l.Env.Nodes)
	l.Env.Kubeconfig = l.KubeconfigPath()
	if note == "" {
		return fmt.Sprintf("%d nodes", len(nodes)), nil
	}
	return note, nil
}

func (l *Lab) startRegistry(ctx context.Context) (string, error) {
	if ok, err := containerExists(ctx, RegistryContainer); err != nil {
		return "", err
	} else if ok {
		if _, err := docker(ctx, nil, "start", RegistryContainer); err != nil {
			return "", err
		}
		return "reused", waitHTTP(ctx, "http://"+RegistryHostAddr+"/v2/", 30*time.Second)
	}
	img, err := RegistryImage()
	if err != nil {
		return "", err
	}
	tag, _, err := img.EnsureDocker(ctx, RegistryRepo)
	if err != nil {
		return "", err
	}
	if _, err := docker(ctx, nil, "run", "-d", "--name", RegistryContainer, "--network", KindNetwork,
		"--restart", "unless-stopped", "-p", RegistryHostAddr+":5000", tag); err != nil {
		return "", fmt.Errorf("failed to start the registry container: %w", err)
	}
	if err := waitHTTP(ctx, "http://"+RegistryHostAddr+"/v2/", 30*time.Second); err != nil {
		logs, _ := docker(ctx, nil, "logs", "--tail", "20", RegistryContainer)
		return "", fmt.Errorf("registry did not answer: %w; logs: %s", err, logs)
	}
	return tag, nil
}

// waitHTTP polls url until it answers 200 or timeout passes.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	return lab.WaitHTTP(ctx, http.DefaultClient, url, timeout)
}

// removeKindEnv removes the env file only when it describes a kind lab: the node lab writes the
// same default path.
func removeKindEnv(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "absent", nil
	}
	if err != nil {
		return "", fmt.Errorf("failed to read lab env file: %w", err)
	}
	if env, err := lab.ParseEnv(data); err != nil || env.Lab != lab.KindKind {
		return "kept: not the kind lab's", nil
	}
	if err := os.Remove(path); err != nil {
		return "", fmt.Errorf("failed to remove lab env file: %w", err)
	}
	return "", nil
}
