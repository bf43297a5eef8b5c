package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
)

// EnvLabEnv names the lab env file when --lab-env is not given.
const EnvLabEnv = "KEYSYNC_LAB_ENV"

// EnvKubeconfig overrides the lab's KUBECONFIG when --kubeconfig is not given.
const EnvKubeconfig = "KEYSYNC_KUBECONFIG"

// StartHint is how to get a lab; every "no lab" error ends with it.
const StartHint = "start the node lab with `make node-lab-up` (it writes _out/lab.env), or pass --lab-env FILE for another lab"

// ErrNoLab is wrapped when no lab env file can be found.
var ErrNoLab = errors.New("no lab")

// Options say where the lab is and how to reach its nodes. Settings are resolved in this
// order, first non-empty wins:
//
//	lab env file: Options.LabEnv (--lab-env) > $KEYSYNC_LAB_ENV > <checkout>/_out/lab.env
//	kubeconfig:   Options.Kubeconfig (--kubeconfig) > $KEYSYNC_KUBECONFIG > the env file's KUBECONFIG
//	node driver:  Options.Hooks (func > command > base, see nodedriver.Config), whose base is
//	              Drivers[env.Access()] (default: DefaultDrivers)
//	adding nodes: Options.NodeAdder > Hooks.AddNodeCmd (--hook-add-node) > the env file's
//	              ADD_NODE_CMD (capability add-node)
type Options struct {
	LabEnv     string
	Kubeconfig string
	// Hooks override node operations; Hooks.Base is filled from Drivers when nil.
	Hooks nodedriver.Config
	// Drivers maps node accesses (the env file's NODE_ACCESS) to driver factories; nil means
	// DefaultDrivers().
	Drivers map[lab.NodeAccess]DriverFactory
	// NodeAdder adds nodes to the lab; nil means --hook-add-node, else the lab's own
	// ADD_NODE_CMD when it has capability add-node, else none.
	NodeAdder NodeAdder
	// RunID prefixes object names; default random.
	RunID string
	// Guard, when set, is armed with the run's client, run ID and node driver so that an
	// interrupt removes what the run created (interrupt.go).
	Guard       *Guard
	SyncTimeout time.Duration
	// P99SyncLatency bounds the latency area's p99 (--p99-sync-latency; default
	// DefaultP99SyncLatency).
	P99SyncLatency time.Duration
	// KP reaches the cluster's own Key Protect where keyprotect-config exists (--kp-*).
	KP LiveKP
	// AgentSELinuxType is the SELinux type of the node agent pods on any cluster
	// (--agent-selinux-type; only for nodes that enforce SELinux; default none).
	AgentSELinuxType string
	// Profile judges the run (default DefaultProfile).
	Profile Profile
	Logger  *slog.Logger
	// Getenv reads the environment (os.Getenv by default); Getwd finds the checkout.
	Getenv func(string) string
	Getwd  func() (string, error)
}

// RegisterFlags adds the flags both entry points share beyond the lab and the hooks: the
// cluster's own Key Protect (--kp-root-key-id, --kp-url, --kp-instance-id, --kp-token-url,
// --kp-apikey-file; the API key also from $KEYSYNC_KP_APIKEY, read here) and
// --agent-selinux-type.
func (o *Options) RegisterFlags(fs *flag.FlagSet, getenv func(string) string) {
	o.KP.FromEnv(getenv)
	o.KP.RegisterFlags(fs)
	fs.StringVar(&o.AgentSELinuxType, "agent-selinux-type", o.AgentSELinuxType,
		"SELinux type of the node agent pods on any cluster, only where the nodes enforce SELinux (e.g. spc_t; default none)")
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
	env = withDefaultCapabilities(env)
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
	// client-go's default 5 requests/s would stretch the faults area's burst of 200 Secret
	// changes over 40 s, long enough for a synchronizer to keep up with each one.
	restCfg.QPS, restCfg.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to create Kubernetes client: %w", err)
	}
	runID := o.RunID
	if runID == "" {
		runID = NewRunID()
	}
	ns := env.SyncerNamespace
	if ns == "" {
		ns = DefaultNamespace
	}
	if o.Guard != nil {
		// Where the run creates objects: its Secrets, its Pods and Services, the node agents.
		o.Guard.arm(cs, runID, ns, podNamespace, cluster.DefaultNamespace)
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

	if err := o.KP.Resolve(); err != nil {
		return nil, nil, err
	}
	hooks := o.Hooks
	if hooks.CmdTimeout == 0 {
		def := nodedriver.NewConfig()
		hooks.CmdTimeout, hooks.Stderr = def.CmdTimeout, def.Stderr
	}
	closeFn = func() error { return nil }
	drivers := o.Drivers
	if drivers == nil {
		drivers = DefaultDrivers()
	}
	factory := drivers[env.Access()]
	var authPuller AuthPuller
	if hooks.Base == nil && factory != nil {
		base, err := factory(ctx, DriverInput{Env: env, Client: cs, Config: restCfg, CmdTimeout: hooks.CmdTimeout,
			SELinuxType: o.AgentSELinuxType, Logger: o.Logger, RunID: runID})
		if err != nil {
			return nil, nil, fmt.Errorf("failed to create the node driver for NODE_ACCESS=%s: %w", env.Access(), err)
		}
		if cl, ok := base.(interface{ Close() error }); ok {
			closeFn = cl.Close
		}
		// Every pull and run through the base driver sends the lab registry's credentials.
		authPuller, base = withRegistryAuth(env, base)
		hooks.Base = base
	}
	// No key bytes leave a node unless this run created that key (Context.Owned).
	owned := &nodedriver.OwnedKeys{}
	driver := nodedriver.Guard(nodedriver.New(hooks), owned)
	adder := o.NodeAdder
	if adder == nil {
		adder = newNodeAdder(env, hooks, driver, func(ctx context.Context, node string) (nodedriver.Driver, error) {
			if factory == nil || env.Access() != lab.AccessDocker {
				return driver, nil
			}
			// Drivers that know their nodes by name need one for the new node.
			one := env
			one.Nodes = []string{node}
			d, err := factory(ctx, DriverInput{Env: one, Client: cs, Config: restCfg, CmdTimeout: hooks.CmdTimeout,
				SELinuxType: o.AgentSELinuxType, Logger: o.Logger, RunID: runID})
			if err != nil {
				return nil, err
			}
			// The new node's pulls carry the registry's credentials too.
			_, d = withRegistryAuth(one, d)
			return nodedriver.Guard(d, owned), nil
		})
	}
	planter := newPlanter(env)
	if o.Guard != nil {
		closeFn = o.Guard.wrapClose(closeFn)
		o.Guard.armPlanter(planter)
	}
	c = &Context{Planter: planter, Lab: env, Client: cs, Driver: driver, Owned: owned, KP: o.KP, Fixtures: fx, RunID: runID,
		Namespace: ns, SyncTimeout: o.SyncTimeout, P99SyncLatency: o.P99SyncLatency, Profile: o.Profile, Logger: o.Logger, NodeAdder: adder, authPuller: authPuller}
	return c, closeFn, nil
}
