// Package kind is the node driver of the kind lab: every node is a docker container running
// CRI-O (keysync's node image). Pulls go through the node's CRI with crictl (docker exec), the
// keys tree is read inside the node (docker exec), and images run as real Pods pinned to the
// node through the Kubernetes API, the way a workload would run them.
package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/podrun"
)

// KeysRoot is CRI-O's decryption_keys_path inside the node image.
const KeysRoot = "/etc/crio/keys"

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
	// Logger narrates calls at debug level (default: discard).
	Logger *slog.Logger
}

// Driver is the kind lab's nodedriver.Driver.
type Driver struct{ opts Options }

var (
	_ nodedriver.Driver     = (*Driver)(nil)
	_ nodedriver.ArgsRunner = (*Driver)(nil)
)

// New validates the options.
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
	return &Driver{opts: opts}, nil
}

// Name implements nodedriver.Driver.
func (d *Driver) Name() string { return "kind" }

// Nodes implements nodedriver.Driver.
func (d *Driver) Nodes(context.Context) ([]string, error) { return slices.Clone(d.opts.Nodes), nil }

func (d *Driver) checkNode(node string) error {
	if !slices.Contains(d.opts.Nodes, node) {
		return fmt.Errorf("kind: unknown node %q (the lab has %v)", node, d.opts.Nodes)
	}
	return nil
}

// execError is a failed docker exec: its exit status and stderr.
type execError struct {
	code   int
	stderr string
	err    error
}

func (e *execError) Error() string {
	if e.stderr != "" {
		return fmt.Sprintf("%v: %s", e.err, e.stderr)
	}
	return e.err.Error()
}
func (e *execError) Unwrap() error { return e.err }

// exec runs argv inside node and returns stdout.
func (d *Driver) exec(ctx context.Context, node string, argv ...string) ([]byte, error) {
	d.opts.Logger.DebugContext(ctx, "docker exec", "node", node, "argv", argv)
	cmd := exec.CommandContext(ctx, d.opts.Docker, append([]string{"exec", node}, argv...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		ee := &execError{code: -1, stderr: strings.TrimSpace(errb.String()), err: err}
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			ee.code = xe.ExitCode()
		}
		return out.Bytes(), ee
	}
	return out.Bytes(), nil
}

// PullImage implements nodedriver.Driver with crictl pull on the node (CRI PullImage), then
// removes the image again so that the next pull of the reference fetches and decrypts anew.
// The error quotes CRI-O's message verbatim.
func (d *Driver) PullImage(ctx context.Context, node, ref string) error {
	if err := d.checkNode(node); err != nil {
		return err
	}
	out, err := d.exec(ctx, node, "crictl", "pull", ref)
	if err != nil {
		return fmt.Errorf("failed to pull image %s on node %s: %w", ref, node, err)
	}
	// "Image is up to date for sha256:<id>"
	if f := strings.Fields(string(out)); len(f) > 0 {
		id := f[len(f)-1]
		if _, err := d.exec(ctx, node, "crictl", "rmi", id); err != nil {
			d.opts.Logger.DebugContext(ctx, "image kept after pull", "node", node, "image", id, "err", err)
		}
	}
	return nil
}

// RunImage implements nodedriver.Driver: a Pod pinned to node (nodeName, imagePullPolicy
// Always, restartPolicy Never) runs the image to completion; its logs are the output.
func (d *Driver) RunImage(ctx context.Context, node, ref string) (string, error) {
	return d.RunImageArgs(ctx, node, ref, nil)
}

// RunImageArgs implements nodedriver.ArgsRunner: RunImage with args replacing the image's CMD
// (the Pod's args).
func (d *Driver) RunImageArgs(ctx context.Context, node, ref string, args []string) (string, error) {
	if err := d.checkNode(node); err != nil {
		return "", err
	}
	if d.opts.Client == nil {
		return "", fmt.Errorf("kind: RunImage needs a Kubernetes client: %w", nodedriver.ErrUnsupported)
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.RunTimeout)
	defer cancel()
	return podrun.Run(ctx, d.opts.Client, d.opts.Namespace, node, ref, args)
}

// ListKeys implements nodedriver.Driver with find(1) inside the node (no symlink is followed).
func (d *Driver) ListKeys(ctx context.Context, node string) ([]nodedriver.Entry, error) {
	if err := d.checkNode(node); err != nil {
		return nil, err
	}
	out, err := d.exec(ctx, node, "sh", "-c",
		`[ -d "$1" ] || exit 0; find "$1" -mindepth 1 -printf '%y %m %s %P\n'`, "sh", KeysRoot)
	if err != nil {
		return nil, fmt.Errorf("failed to list keys tree %s on node %s: %w", KeysRoot, node, err)
	}
	return parseFind(out)
}

// parseFind turns `find -printf '%y %m %s %P\n'` lines into entries.
func parseFind(out []byte) ([]nodedriver.Entry, error) {
	var b bytes.Buffer
	for i, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("failed to parse find output line %d: %q", i+1, line)
		}
		t := nodedriver.TypeOther
		switch f[0] {
		case "f":
			t = nodedriver.TypeFile
		case "d":
			t = nodedriver.TypeDir
			f[2] = "0"
		case "l":
			t = nodedriver.TypeSymlink
			f[2] = "0"
		default:
			f[2] = "0"
		}
		fmt.Fprintf(&b, "%s %s %s %s\n", t, f[1], f[2], f[3])
	}
	return nodedriver.ParseListing(b.Bytes())
}

// Exit statuses of ReadKey's script inside the node.
const (
	exitMissing    = 4
	exitNotRegular = 5
)

// ReadKey implements nodedriver.Driver; it refuses symlinks and anything but a regular file.
func (d *Driver) ReadKey(ctx context.Context, node, relpath string) ([]byte, error) {
	if err := d.checkNode(node); err != nil {
		return nil, err
	}
	rel, err := nodedriver.CleanRelPath(relpath)
	if err != nil {
		return nil, err
	}
	p := path.Join(KeysRoot, rel)
	out, err := d.exec(ctx, node, "sh", "-c",
		`[ -L "$1" ] && exit 5; [ -e "$1" ] || exit 4; [ -f "$1" ] || exit 5; exec cat -- "$1"`, "sh", p)
	var ee *execError
	switch {
	case err == nil:
		return out, nil
	case errors.As(err, &ee) && ee.code == exitMissing:
		return nil, fmt.Errorf("failed to read key %s on node %s: %w", rel, node, fs.ErrNotExist)
	case errors.As(err, &ee) && ee.code == exitNotRegular:
		return nil, fmt.Errorf("failed to read key %s on node %s: not a regular file", rel, node)
	}
	return nil, fmt.Errorf("failed to read key %s on node %s: %w", rel, node, err)
}
