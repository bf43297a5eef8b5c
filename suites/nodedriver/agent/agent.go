// Package agent is the node side of the node agent protocol (package nodedriver, protocol.go):
// the operations on one node's keys tree (CRI-O's decryption_keys_path) and its CRI socket,
// and Main, the command line of cmd/keysync-node-agent. The node lab calls it in-process; the
// kind lab runs the binary in each node container (docker exec); any cluster runs it in one
// pod per node (pod exec).
//
// It links no Kubernetes client, kind, e2e-framework or testing: the agent binary is pushed to
// users' clusters and copied into kind nodes. Key bytes go to the caller that asked (read-key's
// stdout) and nowhere else; audit answers verdicts and digests only.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// CRI-O's defaults on a node (and in the kind lab's node image).
const (
	DefaultKeysRoot    = "/etc/crio/keys"
	DefaultCRIEndpoint = "unix:///var/run/crio/crio.sock"
)

// Options describe the node.
type Options struct {
	// KeysRoot is CRI-O's decryption_keys_path as this process sees it (absolute).
	KeysRoot string
	// CRIEndpoint is CRI-O's socket: a path or a unix:// URL.
	CRIEndpoint string
	// LogDir receives the container logs of Run (default: a temp dir per run). CRI-O writes
	// them, so it must be a directory CRI-O and this process both see.
	LogDir string
	// RunTimeout bounds one Run (default 2 minutes).
	RunTimeout time.Duration
	// Logger narrates CRI calls at debug level (default: discard).
	Logger *slog.Logger
}

// Node answers the protocol's operations for one node. Close releases the CRI connection.
type Node struct {
	opts   Options
	conn   *grpc.ClientConn
	images runtimeapi.ImageServiceClient
	rt     runtimeapi.RuntimeServiceClient
}

// New validates opts; the CRI socket is dialled on its first use.
func New(opts Options) (*Node, error) {
	if opts.KeysRoot == "" || !filepath.IsAbs(opts.KeysRoot) {
		return nil, fmt.Errorf("keys root %q must be an absolute path", opts.KeysRoot)
	}
	target := opts.CRIEndpoint
	switch {
	case target == "":
		return nil, errors.New("the CRI endpoint is empty")
	case strings.HasPrefix(target, "unix://"):
	case strings.HasPrefix(target, "/"):
		target = "unix://" + target
	default:
		return nil, fmt.Errorf("CRI endpoint %q must be a socket path or unix:// URL", opts.CRIEndpoint)
	}
	if opts.RunTimeout <= 0 {
		opts.RunTimeout = 2 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, fmt.Errorf("failed to create CRI client for %s: %w", target, err)
	}
	return &Node{opts: opts, conn: conn,
		images: runtimeapi.NewImageServiceClient(conn), rt: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

// Close closes the CRI connection.
func (n *Node) Close() error { return n.conn.Close() }

// ListKeys walks the keys tree without following symlinks. The root is not listed; a missing
// tree is empty; entries removed while walking are left out.
func (n *Node) ListKeys(context.Context) ([]nodedriver.Entry, error) {
	root := n.opts.KeysRoot
	var entries []nodedriver.Entry
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if p == root {
			return nil
		}
		info, err := de.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // removed while walking
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e := nodedriver.Entry{Path: filepath.ToSlash(rel), Mode: info.Mode().Perm(), Type: nodedriver.TypeOf(info.Mode())}
		if e.Type == nodedriver.TypeFile {
			e.Size = info.Size()
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to list keys tree %s: %w", root, err)
	}
	return entries, nil
}

// errNotRegular is ReadKey's answer for anything but a regular file.
var errNotRegular = errors.New("not a regular file")

// ReadKey returns the bytes of the regular file at relpath; a missing file yields an error
// wrapping fs.ErrNotExist; a symlink is refused, never followed.
func (n *Node) ReadKey(_ context.Context, relpath string) ([]byte, error) {
	rel, err := nodedriver.CleanRelPath(relpath)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(n.opts.KeysRoot, filepath.FromSlash(rel))
	if info, err := os.Lstat(p); err != nil {
		return nil, fmt.Errorf("failed to read key %s: %w", rel, err)
	} else if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("failed to read key %s: %w (%s)", rel, errNotRegular, nodedriver.TypeOf(info.Mode()))
	}
	// O_NOFOLLOW: a symlink swapped in after Lstat is refused too.
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to read key %s: %w", rel, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to stat key %s: %w", rel, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("failed to read key %s: %w", rel, errNotRegular)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("failed to read key %s: %w", rel, err)
	}
	return data, nil
}

// Audit lists the keys tree with CRI-O's verdict on every entry (nodedriver.Judge), judged
// here: no key bytes leave this process.
func (n *Node) Audit(ctx context.Context) ([]nodedriver.AuditEntry, error) {
	return nodedriver.AuditKeys(ctx, localReader{n}, "")
}

// localReader is Node as a nodedriver.KeyReader (the node argument is ignored).
type localReader struct{ n *Node }

func (r localReader) ListKeys(ctx context.Context, _ string) ([]nodedriver.Entry, error) {
	return r.n.ListKeys(ctx)
}

func (r localReader) ReadKey(ctx context.Context, _, relpath string) ([]byte, error) {
	return r.n.ReadKey(ctx, relpath)
}
