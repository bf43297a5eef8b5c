// Package kind is the node driver of the kind lab: every node is a docker container running
// CRI-O (keysync's node image). It speaks the node agent protocol over `docker exec`: on first
// use of a node it copies the static agent binary (cmd/keysync-node-agent) into the node
// container with `docker cp`, then runs `keysync-node-agent OP` there for the keys tree, audits
// and pulls (CRI PullImage on the node's socket). Images run as real Pods pinned to the node
// through the Kubernetes API (package podrun), the way a workload would run them.
package kind

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/agent"
	"github.com/keysync-dev/keysync/suites/nodedriver/agentbin"
	"github.com/keysync-dev/keysync/suites/nodedriver/podrun"
)

// KeysRoot is CRI-O's decryption_keys_path inside the node image, CRISocket its socket.
const (
	KeysRoot  = agent.DefaultKeysRoot
	CRISocket = agent.DefaultCRIEndpoint
	// AgentPath is where the driver copies the agent binary in each node container.
	AgentPath = "/usr/local/bin/" + agentbin.Name
)

// Options describe the lab's nodes.
type Options struct {
	// Nodes are the node names (lab env NODES); each is also its docker container's name.
	Nodes []string
	// Client runs RunImage's Pods; without it RunImage is unsupported.
	Client kubernetes.Interface
	// Namespace holds RunImage's Pods (default "default").
	Namespace string
	// RunTimeout bounds one RunImage (default 3 minutes).
	RunTimeout time.Duration
	// Docker is the docker CLI (default "docker").
	Docker string
	// AgentBinary is the static agent binary to copy into the nodes (default: agentbin.Load's
	// search: beside this program, else built from the checkout).
	AgentBinary string
	// Logger narrates calls at debug level (default: discard).
	Logger *slog.Logger
	// Labels are added to RunImage's Pods (a run's keysync.dev/run-id).
	Labels map[string]string
}

// Driver is the kind lab's nodedriver.Driver.
type Driver struct {
	*nodedriver.Agent
	opts Options
	tr   *dockerExec
}

var (
	_ nodedriver.Driver     = (*Driver)(nil)
	_ nodedriver.ArgsRunner = (*Driver)(nil)
	_ nodedriver.Auditor    = (*Driver)(nil)
)

// New validates the options. Nothing touches a node before its first operation.
func New(opts Options) (*Driver, error) {
	if len(opts.Nodes) == 0 {
		return nil, errors.New("kind: no nodes (lab env NODES)")
	}
	for _, n := range opts.Nodes {
		if n == "" || strings.ContainsAny(n, " \t\n/") {
			return nil, fmt.Errorf("kind: invalid node name %q", n)
		}
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.RunTimeout <= 0 {
		opts.RunTimeout = 3 * time.Minute
	}
	if opts.Docker == "" {
		opts.Docker = "docker"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Nodes = slices.Clone(opts.Nodes)
	slices.Sort(opts.Nodes)
	tr := &dockerExec{opts: &opts, installed: map[string]bool{}}
	return &Driver{Agent: &nodedriver.Agent{Transport: tr}, opts: opts, tr: tr}, nil
}

// Name implements nodedriver.Driver.
func (d *Driver) Name() string { return "kind" }

// Nodes implements nodedriver.Driver.
func (d *Driver) Nodes(context.Context) ([]string, error) { return slices.Clone(d.opts.Nodes), nil }

// RunImage implements nodedriver.Driver: a Pod pinned to node (nodeName, imagePullPolicy
// Always, restartPolicy Never) runs the image to completion; its logs are the output.
func (d *Driver) RunImage(ctx context.Context, node, ref string) (string, error) {
	return d.RunImageArgs(ctx, node, ref, nil)
}

// RunImageArgs implements nodedriver.ArgsRunner: RunImage with args replacing the image's CMD
// (the Pod's args).
func (d *Driver) RunImageArgs(ctx context.Context, node, ref string, args []string) (string, error) {
	if err := d.tr.checkNode(node); err != nil {
		return "", err
	}
	if d.opts.Client == nil {
		return "", fmt.Errorf("kind: RunImage needs a Kubernetes client: %w", nodedriver.ErrUnsupported)
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.RunTimeout)
	defer cancel()
	return podrun.RunWith(ctx, d.opts.Client, d.opts.Namespace, node, ref, args, podrun.Options{Labels: d.opts.Labels})
}

// RunImageArgsAuth is RunImageArgs with registry credentials: the Pod gets a pull Secret
// made of authFile (a containers-auth.json document is a valid .dockerconfigjson).
func (d *Driver) RunImageArgsAuth(ctx context.Context, node, ref string, args []string, authFile []byte) (string, error) {
	if err := d.tr.checkNode(node); err != nil {
		return "", err
	}
	if d.opts.Client == nil {
		return "", fmt.Errorf("kind: RunImage needs a Kubernetes client: %w", nodedriver.ErrUnsupported)
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.RunTimeout)
	defer cancel()
	return podrun.RunWith(ctx, d.opts.Client, d.opts.Namespace, node, ref, args, podrun.Options{Labels: d.opts.Labels, DockerConfigJSON: authFile})
}

// dockerExec is the docker exec transport: the agent binary, copied into each node container
// once, run with `docker exec`.
type dockerExec struct {
	opts *Options

	mu        sync.Mutex
	binary    []byte
	installed map[string]bool
}

func (t *dockerExec) checkNode(node string) error {
	if !slices.Contains(t.opts.Nodes, node) {
		return fmt.Errorf("kind: unknown node %q (the lab has %v)", node, t.opts.Nodes)
	}
	return nil
}

// RunAgent implements nodedriver.Transport.
func (t *dockerExec) RunAgent(ctx context.Context, node string, args []string, stdout, stderr io.Writer) (int, error) {
	return t.RunAgentStdin(ctx, node, args, nil, stdout, stderr)
}

// RunAgentStdin implements nodedriver.StdinTransport: `docker exec -i` when stdin is set.
func (t *dockerExec) RunAgentStdin(ctx context.Context, node string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if err := t.checkNode(node); err != nil {
		return 0, err
	}
	if err := t.install(ctx, node); err != nil {
		return 0, err
	}
	argv := []string{"exec"}
	if stdin != nil {
		argv = append(argv, "-i")
	}
	argv = append(append(argv, node, AgentPath, "--keys-root", KeysRoot, "--cri", CRISocket), args...)
	t.opts.Logger.DebugContext(ctx, "docker exec", "node", node, "args", args)
	cmd := exec.CommandContext(ctx, t.opts.Docker, argv...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err := cmd.Run()
	var xe *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &xe) && xe.Exited() && ctx.Err() == nil:
		return xe.ExitCode(), nil
	}
	return 0, fmt.Errorf("failed to docker exec in node %s: %w", node, err)
}

// install copies the agent binary to AgentPath in node, once per driver and node (a node the
// lab adds later gets it on its first operation). docker cp replaces the file, so a run of the
// agent from an earlier copy is not disturbed.
func (t *dockerExec) install(ctx context.Context, node string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.installed[node] {
		return nil
	}
	if t.binary == nil {
		// A build from the checkout may outlast the first operation's deadline: it gets its own.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		bin, from, err := agentbin.Load(bctx, t.opts.AgentBinary)
		if err != nil {
			return fmt.Errorf("kind: %w", err)
		}
		t.opts.Logger.DebugContext(ctx, "node agent binary", "from", from, "bytes", len(bin))
		t.binary = bin
	}
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	hdr := &tar.Header{Name: path.Base(AgentPath), Mode: 0o755, Size: int64(len(t.binary)), Typeflag: tar.TypeReg,
		ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("failed to archive the node agent: %w", err)
	}
	if _, err := tw.Write(t.binary); err != nil {
		return fmt.Errorf("failed to archive the node agent: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("failed to archive the node agent: %w", err)
	}
	cmd := exec.CommandContext(ctx, t.opts.Docker, "cp", "-", node+":"+path.Dir(AgentPath))
	cmd.Stdin = &archive
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to copy the node agent into node %s (docker cp): %w: %s", node, err, strings.TrimSpace(string(out)))
	}
	t.installed[node] = true
	return nil
}
