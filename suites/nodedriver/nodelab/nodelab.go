// Package nodelab is the node driver of the node lab: one node whose keys tree is a host
// directory (KEYS_ROOT, CRI-O's decryption_keys_path) and whose runtime is CRI-O on a local
// CRI socket (CRI_ENDPOINT). It speaks the node agent protocol in-process: the agent library
// (package suites/nodedriver/agent) answers every operation, pulls and runs included, through
// the CRI gRPC API the way the kubelet drives CRI-O.
package nodelab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/agent"
)

// Options describe the lab's one node.
type Options struct {
	// Node is the node's Kubernetes name (the lab env file's NODES).
	Node string
	// CRIEndpoint is CRI-O's socket: a path or a unix:// URL (CRI_ENDPOINT).
	CRIEndpoint string
	// KeysRoot is the host path of CRI-O's decryption_keys_path (KEYS_ROOT).
	KeysRoot string
	// LogDir receives container logs of RunImage (default: a temp dir per run).
	LogDir string
	// RunTimeout bounds one RunImage (default 2 minutes).
	RunTimeout time.Duration
	// Logger narrates CRI calls at debug level (default: discard).
	Logger *slog.Logger
}

// Driver is the node lab's nodedriver.Driver: the protocol's client over the in-process
// transport. Close releases the CRI connection.
type Driver struct {
	*nodedriver.Agent
	opts Options
	node *agent.Node
}

var (
	_ nodedriver.Driver     = (*Driver)(nil)
	_ nodedriver.ArgsRunner = (*Driver)(nil)
	_ nodedriver.Auditor    = (*Driver)(nil)
)

// New validates the options; the CRI socket is dialled on first use.
func New(opts Options) (*Driver, error) {
	if opts.Node == "" {
		return nil, errors.New("nodelab: node name is empty (lab env NODES)")
	}
	if opts.KeysRoot == "" || !filepath.IsAbs(opts.KeysRoot) {
		return nil, fmt.Errorf("nodelab: keys root %q must be an absolute path (lab env KEYS_ROOT)", opts.KeysRoot)
	}
	if opts.CRIEndpoint == "" {
		return nil, errors.New("nodelab: CRI endpoint is empty (lab env CRI_ENDPOINT)")
	}
	n, err := agent.New(agent.Options{KeysRoot: opts.KeysRoot, CRIEndpoint: opts.CRIEndpoint,
		LogDir: opts.LogDir, RunTimeout: opts.RunTimeout, Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("nodelab: %w (lab env CRI_ENDPOINT, KEYS_ROOT)", err)
	}
	d := &Driver{opts: opts, node: n}
	d.Agent = &nodedriver.Agent{Transport: InProcess(opts.Node, n)}
	return d, nil
}

// InProcess is the in-process transport: the agent library answers for node name, in this
// process, through the same command line and exit statuses as the agent binary.
func InProcess(name string, n *agent.Node) nodedriver.Transport {
	return inProcess{name: name, n: n}
}

type inProcess struct {
	name string
	n    *agent.Node
}

var _ nodedriver.StdinTransport = inProcess{}

// RunAgent implements nodedriver.Transport.
func (t inProcess) RunAgent(ctx context.Context, node string, args []string, stdout, stderr io.Writer) (int, error) {
	return t.RunAgentStdin(ctx, node, args, nil, stdout, stderr)
}

// RunAgentStdin implements nodedriver.StdinTransport.
func (t inProcess) RunAgentStdin(ctx context.Context, node string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if node != t.name {
		return 0, fmt.Errorf("nodelab: unknown node %q (the lab has %q)", node, t.name)
	}
	return agent.ServeIO(ctx, t.n, args, stdin, stdout, stderr), nil
}

// Close closes the CRI connection.
func (d *Driver) Close() error { return d.node.Close() }

// Name implements nodedriver.Driver.
func (d *Driver) Name() string { return "nodelab" }

// Nodes implements nodedriver.Driver: the lab's one node.
func (d *Driver) Nodes(context.Context) ([]string, error) { return []string{d.opts.Node}, nil }
