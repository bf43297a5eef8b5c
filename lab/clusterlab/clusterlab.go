// Package clusterlab is the "cluster" lab: any cluster that is not one of keysync's own labs
// (its nodes run CRI-O, the synchronizer under test is deployed), prepared for the suites. Up
// checks the cluster, pushes the fixtures and the node agent image to a registry every node
// pulls from, and writes the env file (NODE_ACCESS=pod: the suites run the agent as a
// DaemonSet during a run and remove it after). Up creates nothing in the cluster; Down removes
// only the local files Up wrote.
package clusterlab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keysync-dev/keysync/fixtures"
	"github.com/keysync-dev/keysync/fixtures/manifest"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/internal/ociimage"
	"github.com/keysync-dev/keysync/internal/registryauth"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver/agentbin"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
)

// DefaultEnvFile is where the cluster lab's env file goes by default (the kind and node labs
// write lab.DefaultEnvFile; a cluster description lives beside it).
const DefaultEnvFile = "_out/cluster.env"

// Options configure the cluster lab.
type Options struct {
	// Kubeconfig is an admin kubeconfig of the cluster. Required.
	Kubeconfig string
	// Registry is host[:port][/prefix] of a registry every node pulls from: images go under
	// the prefix. Required.
	Registry string
	// NodeRegistry is host[:port] under which the nodes reach Registry when it differs from
	// the address this host pushes to; empty: the same.
	NodeRegistry string
	// CAFile is the registry's CA certificate (PEM); empty: the system's roots (or CertDir).
	CAFile string
	// TLSVerify verifies the registry's certificate; false also allows plain HTTP.
	TLSVerify bool
	// Creds ("user:password"), AuthFile and CertDir reach the registry.
	Creds, AuthFile, CertDir string
	// EnvPath is the env file to write (default DefaultEnvFile); Out holds the fixtures' keys
	// and manifest and the agent image layout (default _out/cluster).
	EnvPath, Out string
	// FixturesManifest reuses fixtures pushed before instead of pushing new ones.
	FixturesManifest string
	// Marker is a prebuilt fixture marker program; AgentBinary a static keysync-node-agent.
	Marker, AgentBinary string
	// SyncerNamespace, SyncSubdir, KeysRoot and CRISocket describe the synchronizer and the
	// nodes (defaults: the runbook's).
	SyncerNamespace, SyncSubdir, KeysRoot, CRISocket string
	// MockKPFrom copies the MOCKKP_* and KP_* settings from another lab's env file (a lab
	// whose mockkp the cluster reaches); it adds capability mockkp.
	MockKPFrom string
	// AddNodeCmd and RemoveNodeCmd add and remove a node of this cluster (capability add-node).
	AddNodeCmd, RemoveNodeCmd string
	Logger                    *slog.Logger
}

// Lab is the cluster lab.
type Lab struct {
	opts Options
	// reg is Registry and NodeRegistry parsed; auth the registry's credentials (nil: none);
	// ca the CAFile's bytes.
	reg  registryTarget
	auth registryauth.File
	ca   []byte
	// authPath and certDir are the files Up writes for later steps (REGISTRY_AUTH_FILE,
	// REGISTRY_CERT_DIR).
	authPath, certDir string
}

var _ lab.Lab = (*Lab)(nil)

// New validates opts and resolves its paths.
func New(opts Options) (*Lab, error) {
	if opts.Kubeconfig == "" {
		return nil, errors.New("no --kubeconfig (and $KUBECONFIG is empty)")
	}
	if opts.Registry == "" {
		return nil, errors.New("--registry is required: a registry every node of the cluster pulls from")
	}
	reg, err := parseRegistry(opts.Registry, opts.NodeRegistry)
	if err != nil {
		return nil, err
	}
	auth, err := registryAuth(opts.Creds, opts.AuthFile, reg)
	if err != nil {
		return nil, err
	}
	var ca []byte
	if opts.CAFile != "" {
		if opts.CertDir != "" {
			return nil, errors.New("--ca-file and --cert-dir exclude each other (--cert-dir holds ca.crt itself)")
		}
		if ca, err = readCA(opts.CAFile); err != nil {
			return nil, err
		}
	}
	if (opts.AddNodeCmd == "") != (opts.RemoveNodeCmd == "") {
		return nil, errors.New("--add-node-cmd and --remove-node-cmd go together")
	}
	if opts.EnvPath == "" {
		opts.EnvPath = DefaultEnvFile
	}
	if opts.Out == "" {
		opts.Out = filepath.Join("_out", "cluster")
	}
	if opts.SyncerNamespace == "" {
		opts.SyncerNamespace = names.Namespace
	}
	if opts.SyncSubdir == "" {
		opts.SyncSubdir = names.SyncSubdir
	}
	if opts.KeysRoot == "" {
		opts.KeysRoot = names.KeysRoot
	}
	if opts.CRISocket == "" {
		opts.CRISocket = names.CRISocket
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	for _, p := range []*string{&opts.Kubeconfig, &opts.EnvPath, &opts.Out} {
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, fmt.Errorf("failed to resolve %s: %w", *p, err)
		}
	}
	if opts.CertDir != "" {
		if opts.CertDir, err = filepath.Abs(opts.CertDir); err != nil {
			return nil, fmt.Errorf("failed to resolve --cert-dir: %w", err)
		}
	}
	return &Lab{opts: opts, reg: reg, auth: auth, ca: ca}, nil
}

// Kind is lab.KindCluster.
func (l *Lab) Kind() string { return lab.KindCluster }

func (l *Lab) client() (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", l.opts.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("failed to load kubeconfig %s: %w", l.opts.Kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to create Kubernetes client: %w", err)
	}
	return cs, nil
}

func (l *Lab) registryOptions(out string) fixtures.Options {
	o := l.opts
	return fixtures.Options{Out: out, Registry: l.reg.push, Prefix: l.reg.repo(fixtures.DefaultPrefix),
		InsecureSkipTLSVerify: !o.TLSVerify, AuthFile: l.authPath, CertDir: cmp.Or(l.certDir, o.CertDir), Logger: o.Logger}
}

// Up checks the cluster, pushes the fixtures and the node agent image, and writes the env file.
func (l *Lab) Up(ctx context.Context, out io.Writer) (lab.Env, error) {
	o := l.opts
	env := lab.Env{Lab: lab.KindCluster, NodeAccess: lab.AccessPod,
		Capabilities: []lab.Capability{lab.CapCluster, lab.CapRunImage},
		Kubeconfig:   o.Kubeconfig, Registry: l.reg.node, SyncerNamespace: o.SyncerNamespace,
		SyncSubdir: o.SyncSubdir, KeysRoot: o.KeysRoot, CRIEndpoint: strings.TrimPrefix(o.CRISocket, "unix://"),
		AddNodeCmd: o.AddNodeCmd, RemoveNodeCmd: o.RemoveNodeCmd}
	if o.AddNodeCmd != "" {
		env.Capabilities = append(env.Capabilities, lab.CapAddNode)
	}
	if o.MockKPFrom != "" {
		from, err := lab.LoadEnv(o.MockKPFrom)
		if err != nil {
			return lab.Env{}, fmt.Errorf("--mockkp-from: %w", err)
		}
		if from.MockKPURL == "" {
			return lab.Env{}, fmt.Errorf("--mockkp-from %s describes no mockkp", o.MockKPFrom)
		}
		env.MockKPURL, env.MockKPTokenURL, env.MockKPAdminURL = from.MockKPURL, from.MockKPTokenURL, from.MockKPAdminURL
		env.MockKPClusterURL, env.MockKPClusterTokenURL = from.MockKPClusterURL, from.MockKPClusterTokenURL
		env.KPInstanceID, env.KPAPIKey, env.KPRootKeyID = from.KPInstanceID, from.KPAPIKey, from.KPRootKeyID
		env.Capabilities = append(env.Capabilities, lab.CapMockKP)
		// The synchronizer is the other lab's, which reaches mockkp by the public names.
		if from.Has(lab.CapKPPublicNames) {
			env.KPPublicURL, env.KPCAFile = from.KPPublicURL, from.KPCAFile
			env.Capabilities = append(env.Capabilities, lab.CapKPPublicNames)
		}
	}
	steps := []lab.Step{
		{Name: "Writing the registry settings", Run: func(context.Context) (string, error) {
			var err error
			if l.authPath, l.certDir, err = writeRegistryFiles(o.Out, l.auth, l.ca); err != nil {
				return "", err
			}
			env.RegistryPrefix, env.RegistryCertDir = l.reg.prefix, cmp.Or(l.certDir, o.CertDir)
			if l.reg.push != l.reg.node {
				env.RegistryPush = l.reg.push
			}
			if l.authPath != "" {
				env.RegistryAuthFile = l.authPath
				env.Capabilities = append(env.Capabilities, lab.CapRegistryAuth)
			}
			note := "push " + l.reg.push + ", nodes pull from " + l.reg.node
			if l.reg.prefix != "" {
				note += ", prefix " + l.reg.prefix
			}
			if l.authPath != "" {
				note += ", credentials in " + l.authPath
			}
			return note, nil
		}},
		{Name: "Reading the cluster", Run: func(ctx context.Context) (string, error) {
			nodes, err := l.readCluster(ctx)
			env.Nodes = nodes
			return fmt.Sprintf("%d nodes", len(nodes)), err
		}},
		{Name: "Pushing the fixtures", Run: func(ctx context.Context) (string, error) {
			path, note, err := l.pushFixtures(ctx)
			env.FixturesManifest = path
			return note, err
		}},
		{Name: "Pushing the node agent image", Run: func(ctx context.Context) (string, error) {
			ref, note, err := l.pushAgent(ctx)
			env.NodeAgentImage = ref
			return note, err
		}},
		{Name: "Writing the lab env file", Run: func(context.Context) (string, error) {
			if err := lab.WriteEnv(o.EnvPath, env); err != nil {
				return "", err
			}
			return o.EnvPath, nil
		}},
	}
	if _, err := lab.RunSteps(ctx, out, false, steps); err != nil {
		return lab.Env{}, err
	}
	return env, nil
}

// readCluster checks that the synchronizer's namespace exists and every node runs CRI-O on
// amd64, and returns the node names sorted.
func (l *Lab) readCluster(ctx context.Context) ([]string, error) {
	cs, err := l.client()
	if err != nil {
		return nil, err
	}
	ns := l.opts.SyncerNamespace
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("namespace %s does not exist: deploy the synchronizer under test first (or pass --syncer-namespace)", ns)
	} else if err != nil {
		return nil, fmt.Errorf("failed to reach the cluster: %w", err)
	}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to list nodes: %w", err)
	}
	var nodes, unfit []string
	for _, n := range list.Items {
		nodes = append(nodes, n.Name)
		info := n.Status.NodeInfo
		if !strings.HasPrefix(info.ContainerRuntimeVersion, "cri-o://") || info.Architecture != "amd64" {
			unfit = append(unfit, fmt.Sprintf("%s (%s, %s)", n.Name, info.ContainerRuntimeVersion, info.Architecture))
		}
	}
	if len(unfit) > 0 {
		return nil, fmt.Errorf("the suites need CRI-O nodes on amd64 (the node agent image is linux/amd64); these are not: %s", strings.Join(unfit, ", "))
	}
	if len(nodes) == 0 {
		return nil, errors.New("the cluster has no nodes")
	}
	slices.Sort(nodes)
	return nodes, nil
}

// pushFixtures pushes the fixtures (or checks the ones named by FixturesManifest) and returns
// the manifest's path.
func (l *Lab) pushFixtures(ctx context.Context) (string, string, error) {
	if l.opts.FixturesManifest != "" {
		path, err := filepath.Abs(l.opts.FixturesManifest)
		if err != nil {
			return "", "", fmt.Errorf("failed to resolve --fixtures-manifest: %w", err)
		}
		if _, err := manifest.Load(path); err != nil {
			return "", "", err
		}
		return path, "reused", nil
	}
	o := l.registryOptions(filepath.Join(l.opts.Out, "fixtures"))
	o.MarkerBinary = l.opts.Marker
	m, err := fixtures.Push(ctx, o)
	if err != nil {
		hint := ""
		if l.opts.Marker == "" {
			hint = " (without --marker the marker program is built from the keysync checkout: run inside it)"
		}
		return "", "", fmt.Errorf("failed to push the fixtures%s: %w", hint, err)
	}
	if err := rewriteManifest(manifest.Path(o.Out), l.reg); err != nil {
		return "", "", fmt.Errorf("failed to point the fixtures manifest at %s: %w", l.reg.node, err)
	}
	return manifest.Path(o.Out), fmt.Sprintf("%d images", len(m.Variants)), nil
}

// pushAgent pushes the node agent image (keysync-node-agent FROM scratch) and returns its
// reference.
func (l *Lab) pushAgent(ctx context.Context) (string, string, error) {
	bin, from, err := agentbin.Load(ctx, l.opts.AgentBinary)
	if err != nil {
		return "", "", err
	}
	img, err := cluster.AgentImage(bin)
	if err != nil {
		return "", "", err
	}
	tag, err := cluster.TagOf(img)
	if err != nil {
		return "", "", err
	}
	layout := filepath.Join(l.opts.Out, "node-agent")
	if err := os.RemoveAll(layout); err != nil {
		return "", "", fmt.Errorf("failed to clean %s: %w", layout, err)
	}
	if err := ociimage.WriteLayout(layout, []string{tag}, map[string]ociimage.Image{tag: img}); err != nil {
		return "", "", err
	}
	ref := l.reg.push + "/" + l.reg.repo(cluster.AgentRepo) + ":" + tag
	if _, err := fixtures.CopyImage(ctx, "oci:"+layout+":"+tag, ref, l.registryOptions(l.opts.Out)); err != nil {
		return "", "", err
	}
	ref = l.reg.nodeRef(ref)
	return ref, fmt.Sprintf("%s (agent %s)", ref, from), nil
}

// Down removes what Up wrote on this host: the env file (only when it describes a cluster lab)
// and the output directory. Nothing in the cluster is Up's; images pushed to the registry stay.
func (l *Lab) Down(ctx context.Context, out io.Writer) error {
	steps := []lab.Step{
		{Name: "Removing the lab env file", Run: func(context.Context) (string, error) {
			return lab.RemoveEnvIf(l.opts.EnvPath, func(env lab.Env) bool { return env.Lab == lab.KindCluster })
		}},
		{Name: "Removing " + l.opts.Out, Run: func(context.Context) (string, error) {
			if _, err := os.Stat(l.opts.Out); errors.Is(err, os.ErrNotExist) {
				return "absent", nil
			}
			if err := os.RemoveAll(l.opts.Out); err != nil {
				return "", fmt.Errorf("failed to remove %s: %w", l.opts.Out, err)
			}
			return "", nil
		}},
	}
	_, err := lab.RunSteps(ctx, out, true, steps)
	return err
}
