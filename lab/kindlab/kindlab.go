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

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/internal/registryauth"
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
	SyncerNamespace   = names.Namespace
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
	// Keysync is the keysync CLI binary; the env file names it in ADD_NODE_CMD and
	// REMOVE_NODE_CMD (`keysync lab add-node --kind kind ...`). Empty: no add-node capability.
	Keysync string
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
		Lab:        lab.KindKind,
		NodeAccess: lab.AccessDocker,
		// plant: the runner reaches each node container with docker exec and docker cp.
		Capabilities:    []lab.Capability{lab.CapCluster, lab.CapIsolated, lab.CapRunImage, lab.CapPlant},
		SyncSubdir:      names.SyncSubdir,
		Registry:        RegistryHostAddr, // nodes map it to the registry container too
		SyncerNamespace: names.Namespace,
	}}, nil
}

var (
	_ lab.Lab       = (*Lab)(nil)
	_ lab.NodeAdder = (*Lab)(nil)
)

// Kind is lab.KindKind.
func (l *Lab) Kind() string { return lab.KindKind }

// nodeCommands names the keysync CLI verbs that add and remove nodes of this lab and disrupt
// it (kill the synchronizer, restart kube-apiserver), for the env file (the suites run them as hooks; they never link this package).
func (l *Lab) nodeCommands() {
	if l.Opts.Keysync == "" {
		return
	}
	args := fmt.Sprintf("--kind %s --name %s --out %s --lab-env %s", lab.KindKind, l.Opts.Name, l.Opts.OutDir, l.Opts.EnvPath)
	l.Env.AddNodeCmd = l.Opts.Keysync + " lab add-node " + args
	l.Env.RemoveNodeCmd = l.Opts.Keysync + " lab remove-node " + args
	l.Env.KillSyncerCmd = l.Opts.Keysync + " lab disrupt kill-syncer " + args
	l.Env.RestartAPIServerCmd = l.Opts.Keysync + " lab disrupt restart-apiserver " + args
	for _, c := range []lab.Capability{lab.CapAddNode, lab.CapKillSyncer, lab.CapRestartAPIServer} {
		if !l.Env.Has(c) {
			l.Env.Capabilities = append(l.Env.Capabilities, c)
		}
	}
}

// Up brings the lab up, printing a status line with timing per step on out, writes the env
// file and returns it. Parts already running (cluster, registry, mockkp) are reused, the addon
// is applied again: Up repairs a lab that is partly down.
func (l *Lab) Up(ctx context.Context, out io.Writer) (lab.Env, error) {
	if out != nil {
		l.Opts.Out = out
	}
	l.nodeCommands()
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
	if _, err := lab.RunSteps(ctx, l.Opts.Out, false, steps); err != nil {
		return lab.Env{}, err
	}
	return l.Env, nil
}

// Down removes the cluster, the registry, mockkp and the env file; it keeps going past
// failures and reports them all.
func (l *Lab) Down(ctx context.Context, out io.Writer) error {
	if out != nil {
		l.Opts.Out = out
	}
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
			// By label (what this version starts) and by name (what older versions started).
			// By name in both lists: one container named twice makes docker rm fail ("removal
			// already in progress").
			labelled, err := docker(ctx, nil, "ps", "-a", "--filter", "label="+LabelLab+"="+DefaultName, "--format", "{{.Names}}")
			if err != nil {
				return "", err
			}
			targets := strings.Fields(labelled)
			for _, c := range []string{RegistryContainer, MockKPContainer} {
				if slices.Contains(targets, c) {
					continue
				}
				ok, err := containerExists(ctx, c)
				if err != nil {
					return "", err
				}
				if ok {
					targets = append(targets, c)
				}
			}
			if len(targets) == 0 {
				return "none", nil
			}
			if _, err := docker(ctx, nil, append([]string{"rm", "-f", "-v"}, targets...)...); err != nil {
				return "", err
			}
			return fmt.Sprintf("%d removed", len(targets)), nil
		}},
		{Name: "Removing the lab env file", Run: func(context.Context) (string, error) {
			return removeKindEnv(l.Opts.EnvPath)
		}},
	}
	_, err := lab.RunSteps(ctx, l.Opts.Out, true, steps)
	return err
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
	img, err := RegistryImage()
	if err != nil {
		return "", err
	}
	tag, _, err := img.EnsureDocker(ctx, RegistryRepo)
	if err != nil {
		return "", err
	}
	creds, fresh, err := l.ensureRegistryAuth(false)
	if err != nil {
		return "", err
	}
	// A registry container from before credentials (no /auth mount, no network aliases)
	// cannot be reused: its images go with it, the fixtures and the synchronizer are pushed
	// again by their steps.
	if mounts, err := docker(ctx, nil, "inspect", "-f", "{{range .Mounts}}{{.Destination}} {{end}}", RegistryContainer); err == nil &&
		!strings.Contains(mounts, "/auth") {
		if _, err := docker(ctx, nil, "rm", "-f", RegistryContainer); err != nil {
			return "", fmt.Errorf("failed to replace the registry container made before credentials: %w", err)
		}
	}
	// /v2/ answers 401 without credentials: any status counts as ready.
	svc := service{Name: RegistryContainer, Image: tag, Ports: map[string]string{"5000/tcp": RegistryHostAddr}, Ready: "/v2/",
		Binds: []string{l.RegistryAuthDir() + ":/auth:ro"}, Aliases: []string{RegistryAlias, RegistryPrivateAlias}}
	// A registry another checkout made reads another htpasswd: this lab's password would
	// never work.
	if ok, err := containerExists(ctx, RegistryContainer); err != nil {
		return "", err
	} else if ok {
		if err := checkOwnBinds(ctx, RegistryContainer, svc.Binds); err != nil {
			return "", err
		}
	}
	if err := svc.start(ctx, l.Opts.Logger); err != nil {
		return "", fmt.Errorf("failed to start the registry: %w", err)
	}
	if err := installNodeAuth(ctx, l.Env.Nodes, creds); err != nil {
		return "", err
	}
	l.registryEnv()
	note := "kept the password"
	if fresh {
		note = "new password"
	}
	return fmt.Sprintf("%s, user %s (%s), names %s, %s", tag, registryauth.Username, note, RegistryPullAddr, RegistryPrivateAddr), nil
}

// waitHTTP polls url until it answers 200 or timeout passes.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	return lab.WaitHTTP(ctx, http.DefaultClient, url, timeout)
}

// removeKindEnv removes the env file only when it describes a kind lab: the node lab writes the
// same default path.
func removeKindEnv(path string) (string, error) {
	return lab.RemoveEnvIf(path, func(env lab.Env) bool { return env.Lab == lab.KindKind })
}
