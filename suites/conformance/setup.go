package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
	"github.com/keysync-dev/keysync/suites/nodedriver/kind"
	"github.com/keysync-dev/keysync/suites/nodedriver/nodelab"
)

// EnvLabEnv names the lab env file when --lab-env is not given.
const EnvLabEnv = "KEYSYNC_LAB_ENV"

// EnvKubeconfig overrides the lab's KUBECONFIG when --kubeconfig is not given.
const EnvKubeconfig = "KEYSYNC_KUBECONFIG"

// StartHint is how to get a lab; every "no lab" error ends with it.
const StartHint = "start the node lab with `make node-lab-up` (it writes _out/lab.env), or pass --lab-env FILE for another lab"

// ErrNoLab is wrapped when no lab env file can be found.
var ErrNoLab = errors.New("no lab")

// DriverFactory builds the node driver of one kind of lab. A driver with a Close() error
// method is closed when the run ends.
type DriverFactory func(ctx context.Context, in DriverInput) (nodedriver.Driver, error)

// DriverInput is what a DriverFactory builds from.
type DriverInput struct {
	Env    lab.Env
	Client kubernetes.Interface
	Config *rest.Config
	// CmdTimeout bounds one node operation (--hook-timeout).
	CmdTimeout time.Duration
	Logger     *slog.Logger
}

// Options say where the lab is and how to reach its nodes. Settings are resolved in this
// order, first non-empty wins:
//
//	lab env file: Options.LabEnv (--lab-env) > $KEYSYNC_LAB_ENV > <checkout>/_out/lab.env
//	kubeconfig:   Options.Kubeconfig (--kubeconfig) > $KEYSYNC_KUBECONFIG > the env file's KUBECONFIG
//	node driver:  Options.Hooks (func > command > base, see nodedriver.Config), whose base is
//	              Drivers[env.Lab] (default: "node" → nodelab)
type Options struct {
	LabEnv     string
	Kubeconfig string
	// Hooks override node operations; Hooks.Base is filled from Drivers when nil.
	Hooks nodedriver.Config
	// Drivers maps KEYSYNC_LAB values to driver factories; nil means DefaultDrivers().
	Drivers map[string]DriverFactory
	// NodeAdder adds nodes to the lab; nil means the lab's default (the kind lab can, the
	// node lab cannot).
	NodeAdder NodeAdder
	// RunID prefixes object names; default random.
	RunID       string
	SyncTimeout time.Duration
	Logger      *slog.Logger
	// Getenv reads the environment (os.Getenv by default); Getwd finds the checkout.
	Getenv func(string) string
	Getwd  func() (string, error)
}

// DefaultDrivers knows the node lab (host paths + CRI socket), the kind lab (docker exec) and
// any other cluster (agent pods, package cluster).
func DefaultDrivers() map[string]DriverFactory {
	return map[string]DriverFactory{
		lab.KindKind: func(_ context.Context, in DriverInput) (nodedriver.Driver, error) {
			return kind.New(kind.Options{Nodes: in.Env.Nodes, Client: in.Client, Logger: in.Logger})
		},
		lab.KindNode: func(_ context.Context, in DriverInput) (nodedriver.Driver, error) {
			if len(in.Env.Nodes) != 1 {
				return nil, fmt.Errorf("the node lab has exactly one node, the env file lists %d", len(in.Env.Nodes))
			}
			return nodelab.New(nodelab.Options{Node: in.Env.Nodes[0], CRIEndpoint: in.Env.CRIEndpoint,
				KeysRoot: in.Env.KeysRoot, Logger: in.Logger})
		},
		lab.KindCluster: func(ctx context.Context, in DriverInput) (nodedriver.Driver, error) {
			env, client, logger := in.Env, in.Client, in.Logger
			// The agents go where the synchronizer runs: the suites check keys on those nodes.
			ns := env.SyncerNamespace
			if ns == "" {
				ns = DefaultNamespace
			}
			var placement *corev1.PodSpec
			ds, err := client.AppsV1().DaemonSets(ns).Get(ctx, AddonName, metav1.GetOptions{})
			switch {
			case err == nil:
				placement = cluster.PlacementOf(ds.Spec.Template.Spec)
			case apierrors.IsNotFound(err):
				logger.InfoContext(ctx, "no synchronizer DaemonSet with the runbook's name: node agents tolerate every taint", "namespace", ns, "name", AddonName)
			default:
				return nil, fmt.Errorf("failed to read the synchronizer's DaemonSet %s/%s: %w", ns, AddonName, err)
			}
			return cluster.Deploy(ctx, cluster.Options{Client: client, Config: in.Config, Image: env.NodeAgentImage,
				KeysRoot: env.KeysRoot, CRISocket: env.CRIEndpoint, Placement: placement, CmdTimeout: in.CmdTimeout, Logger: logger})
		},
	}
}

// ResolveLabEnv returns the lab env file path by the precedence documented on Options, or an
// error wrapping ErrNoLab that says how to start a lab.
func ResolveLabEnv(flagValue string, getenv func(string) string, getwd func() (string, error)) (string, error) {
	p, from := flagValue, "--lab-env"
	if p == "" {
		p, from = getenv(EnvLabEnv), "$"+EnvLabEnv
	}
	if p == "" {
		wd, err := getwd()
		if err != nil {
			return "", fmt.Errorf("failed to get working directory: %w", err)
		}
		root, err := findCheckout(wd)
		if err != nil {
			return "", fmt.Errorf("%w: no --lab-env, no $%s, and %v; %s", ErrNoLab, EnvLabEnv, err, StartHint)
		}
		p, from = filepath.Join(root, lab.DefaultEnvFile), "the default"
	}
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: lab env file %s (%s) does not exist; %s", ErrNoLab, p, from, StartHint)
		}
		return "", fmt.Errorf("failed to stat lab env file %s: %w", p, err)
	}
	return p, nil
}

// findCheckout walks up from dir to the keysync module root.
func findCheckout(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/keysync-dev/keysync\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s is not inside the keysync checkout", dir)
		}
	}
}

// NewRunID returns a short random DNS-label-safe ID.
func NewRunID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewContext loads the lab and builds the Context; close releases the node driver.
func NewContext(ctx context.Context, o Options) (c *Context, closeFn func() error, err error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Getwd == nil {
		o.Getwd = os.Getwd
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	path, err := ResolveLabEnv(o.LabEnv, o.Getenv, o.Getwd)
	if err != nil {
		return nil, nil, err
	}
	env, err := lab.LoadEnv(path)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to load the lab (%s): %w", StartHint, err)
	}
	kubeconfig := o.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = o.Getenv(EnvKubeconfig)
	}
	if kubeconfig == "" {
		kubeconfig = env.Kubeconfig
	}
	env.Kubeconfig = kubeconfig
	restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to load kubeconfig %s: %w", kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to create Kubernetes client: %w", err)
	}
	ns := env.SyncerNamespace
	if ns == "" {
		ns = DefaultNamespace
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("the synchronizer's namespace %s does not exist in the lab's cluster (is the synchronizer deployed?)", ns)
		}
		return nil, nil, fmt.Errorf("failed to reach the lab's cluster with %s (is the lab up? %s): %w", kubeconfig, StartHint, err)
	}
	if env.FixturesManifest == "" {
		return nil, nil, errors.New("the lab env file has no FIXTURES_MANIFEST")
	}
	fx, err := LoadFixtures(env.FixturesManifest)
	if err != nil {
		return nil, nil, err
	}

	hooks := o.Hooks
	if hooks.CmdTimeout == 0 {
		def := nodedriver.NewConfig()
		hooks.CmdTimeout, hooks.Stderr = def.CmdTimeout, def.Stderr
	}
	closeFn = func() error { return nil }
	if hooks.Base == nil {
		drivers := o.Drivers
		if drivers == nil {
			drivers = DefaultDrivers()
		}
		if factory, ok := drivers[env.Lab]; ok {
			base, err := factory(ctx, DriverInput{Env: env, Client: cs, Config: restCfg, CmdTimeout: hooks.CmdTimeout, Logger: o.Logger})
			if err != nil {
				return nil, nil, fmt.Errorf("failed to create the %s lab's node driver: %w", env.Lab, err)
			}
			hooks.Base = base
			if cl, ok := base.(interface{ Close() error }); ok {
				closeFn = cl.Close
			}
		}
	}
	runID := o.RunID
	if runID == "" {
		runID = NewRunID()
	}
	driver := nodedriver.New(hooks)
	adder := o.NodeAdder
	switch {
	case adder != nil:
	case hooks.AddNodeCmd != nil:
		adder = &hookNodeAdder{hooks: hooks, driver: driver}
	case env.Lab == lab.KindKind:
		adder = &kindNodeAdder{env: env, envPath: path, client: cs, logger: o.Logger}
	}
	c = &Context{Lab: env, Client: cs, Driver: driver, Fixtures: fx, RunID: runID,
		Namespace: ns, SyncTimeout: o.SyncTimeout, Logger: o.Logger, NodeAdder: adder}
	return c, closeFn, nil
}

// hookNodeAdder adds and removes nodes through the --hook-add-node and --hook-remove-node
// commands (any cluster); the new node is reached through the suite's own driver.
type hookNodeAdder struct {
	hooks  nodedriver.Config
	driver nodedriver.Driver
}

func (a *hookNodeAdder) AddNode(ctx context.Context, name string) (nodedriver.Driver, error) {
	if _, err := nodedriver.RunHook(ctx, a.hooks.CmdTimeout, a.hooks.Stderr, "add node "+name, a.hooks.AddNodeCmd, name); err != nil {
		// A node may be half joined: take it out again where the run can.
		if a.hooks.RemoveNodeCmd != nil && !errors.Is(err, nodedriver.ErrUnsupported) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.hooks.CmdTimeout)
			defer cancel()
			if rerr := a.RemoveNode(rctx, name); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return nil, err
	}
	return a.driver, nil
}

func (a *hookNodeAdder) RemoveNode(ctx context.Context, name string) error {
	if a.hooks.RemoveNodeCmd == nil {
		return fmt.Errorf("no --hook-remove-node (or $%s): node %s stays in the cluster: %w",
			nodedriver.EnvHookRemoveNode, name, nodedriver.ErrUnsupported)
	}
	_, err := nodedriver.RunHook(ctx, a.hooks.CmdTimeout, a.hooks.Stderr, "remove node "+name, a.hooks.RemoveNodeCmd, name)
	return err
}
