// Package nodelab is the node driver of the node lab: one node whose keys tree is a host
// directory (KEYS_ROOT, CRI-O's decryption_keys_path) and whose runtime is CRI-O on a local
// CRI socket (CRI_ENDPOINT). Pulls and runs go through the CRI gRPC API (k8s.io/cri-api), the
// way the kubelet drives CRI-O.
package nodelab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
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

// Driver is the node lab's nodedriver.Driver. Close releases the CRI connection.
type Driver struct {
	opts   Options
	conn   *grpc.ClientConn
	images runtimeapi.ImageServiceClient
	rt     runtimeapi.RuntimeServiceClient
}

var (
	_ nodedriver.Driver     = (*Driver)(nil)
	_ nodedriver.ArgsRunner = (*Driver)(nil)
)

// New connects to the CRI socket lazily (the first call dials) and returns the driver.
func New(opts Options) (*Driver, error) {
	if opts.Node == "" {
		return nil, errors.New("nodelab: node name is empty (lab env NODES)")
	}
	if opts.KeysRoot == "" || !filepath.IsAbs(opts.KeysRoot) {
		return nil, fmt.Errorf("nodelab: keys root %q must be an absolute path (lab env KEYS_ROOT)", opts.KeysRoot)
	}
	target := opts.CRIEndpoint
	switch {
	case target == "":
		return nil, errors.New("nodelab: CRI endpoint is empty (lab env CRI_ENDPOINT)")
	case strings.HasPrefix(target, "unix://"):
	case strings.HasPrefix(target, "/"):
		target = "unix://" + target
	default:
		return nil, fmt.Errorf("nodelab: CRI endpoint %q must be a socket path or unix:// URL", opts.CRIEndpoint)
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
	return &Driver{opts: opts, conn: conn,
		images: runtimeapi.NewImageServiceClient(conn), rt: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

// Close closes the CRI connection.
func (d *Driver) Close() error { return d.conn.Close() }

// Name implements nodedriver.Driver.
func (d *Driver) Name() string { return "nodelab" }

// Nodes implements nodedriver.Driver: the lab's one node.
func (d *Driver) Nodes(context.Context) ([]string, error) { return []string{d.opts.Node}, nil }

func (d *Driver) checkNode(node string) error {
	if node != d.opts.Node {
		return fmt.Errorf("nodelab: unknown node %q (the lab has %q)", node, d.opts.Node)
	}
	return nil
}

// PullImage implements nodedriver.Driver with CRI PullImage. An image the pull added is
// removed again, so the node is left as it was found (CRI-O decrypts on every pull of a
// reference anyway, present or not).
func (d *Driver) PullImage(ctx context.Context, node, ref string) error {
	if err := d.checkNode(node); err != nil {
		return err
	}
	imageRef, added, err := d.pull(ctx, ref)
	if err != nil {
		return err
	}
	if added {
		d.removeImage(ctx, imageRef)
	}
	return nil
}

// pull pulls ref and reports whether the image was new on the node.
func (d *Driver) pull(ctx context.Context, ref string) (imageRef string, added bool, err error) {
	before, err := d.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return "", false, fmt.Errorf("failed to get image status of %s: %w", ref, err)
	}
	d.opts.Logger.DebugContext(ctx, "CRI PullImage", "image", ref)
	resp, err := d.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return "", false, fmt.Errorf("failed to pull image %s: %w", ref, err)
	}
	return resp.GetImageRef(), before.GetImage() == nil, nil
}

// removeImage removes a pulled image by its ID: CRI-O answers RemoveImage of a repo-digest
// reference with success but keeps the image.
func (d *Driver) removeImage(ctx context.Context, imageRef string) {
	if imageRef == "" {
		return
	}
	ctx = context.WithoutCancel(ctx)
	id := imageRef
	st, err := d.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: imageRef}})
	if err == nil && st.GetImage().GetId() != "" {
		id = st.GetImage().GetId()
	}
	if _, err := d.images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{
		Image: &runtimeapi.ImageSpec{Image: id}}); err != nil {
		d.opts.Logger.WarnContext(ctx, "failed to remove pulled image", "image", imageRef, "err", err)
	}
}

// HasImage reports whether the node's runtime holds an image for ref (CRI ImageStatus).
func (d *Driver) HasImage(ctx context.Context, node, ref string) (bool, error) {
	if err := d.checkNode(node); err != nil {
		return false, err
	}
	st, err := d.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return false, fmt.Errorf("failed to get image status of %s: %w", ref, err)
	}
	return st.GetImage() != nil, nil
}

// RunImage implements nodedriver.Driver: it pulls ref, runs its default command in a
// host-network pod sandbox (no CNI needed; CRI-O drops the infra container), waits for the
// container to exit and returns its log. A sandbox the lab cannot create yields
// ErrUnsupported with CRI-O's reason.
func (d *Driver) RunImage(ctx context.Context, node, ref string) (string, error) {
	return d.RunImageArgs(ctx, node, ref, nil)
}

// RunImageArgs implements nodedriver.ArgsRunner: RunImage with args replacing the image's CMD.
func (d *Driver) RunImageArgs(ctx context.Context, node, ref string, args []string) (string, error) {
	if err := d.checkNode(node); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.RunTimeout)
	defer cancel()
	imageRef, added, err := d.pull(ctx, ref)
	if err != nil {
		return "", err
	}
	if added {
		defer d.removeImage(ctx, imageRef)
	}

	id := randomID()
	logDir := d.opts.LogDir
	if logDir == "" {
		dir, err := os.MkdirTemp("", "keysync-run-")
		if err != nil {
			return "", fmt.Errorf("failed to create log dir: %w", err)
		}
		defer os.RemoveAll(dir)
		logDir = dir
	} else {
		logDir = filepath.Join(logDir, id)
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			return "", fmt.Errorf("failed to create log dir: %w", err)
		}
	}
	// The container must ask for the namespaces the sandbox has: CRI-O refuses a pod-level PID
	// namespace in a sandbox without an infra container.
	nsOpts := &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_NODE,
		Pid:     runtimeapi.NamespaceMode_CONTAINER,
		Ipc:     runtimeapi.NamespaceMode_POD,
	}
	sbConfig := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "keysync-run-" + id, Namespace: "keysync-suites", Uid: id},
		Hostname:     "keysync-run",
		LogDirectory: logDir,
		Labels:       map[string]string{"app.kubernetes.io/managed-by": "keysync-suites"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: nsOpts,
		}},
	}
	sb, err := d.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbConfig})
	if err != nil {
		return "", fmt.Errorf("nodelab cannot create a pod sandbox to run %s (%v): %w", ref, err, nodedriver.ErrUnsupported)
	}
	sandboxID := sb.GetPodSandboxId()
	defer func() {
		bg := context.WithoutCancel(ctx)
		if _, err := d.rt.StopPodSandbox(bg, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sandboxID}); err != nil {
			d.opts.Logger.WarnContext(ctx, "failed to stop pod sandbox", "id", sandboxID, "err", err)
		}
		if _, err := d.rt.RemovePodSandbox(bg, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sandboxID}); err != nil {
			d.opts.Logger.WarnContext(ctx, "failed to remove pod sandbox", "id", sandboxID, "err", err)
		}
	}()

	ctr, err := d.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  sandboxID,
		SandboxConfig: sbConfig,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "run"},
			Image:    &runtimeapi.ImageSpec{Image: imageRef, UserSpecifiedImage: ref},
			Args:     args,
			LogPath:  "run.log",
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: nsOpts,
			}},
		},
	})
	if err != nil {
		return "", fmt.Errorf("failed to create container from %s: %w", ref, err)
	}
	ctrID := ctr.GetContainerId()
	if _, err := d.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err != nil {
		return "", fmt.Errorf("failed to start container from %s: %w", ref, err)
	}
	exit, err := d.waitExited(ctx, ctrID)
	if err != nil {
		return "", err
	}
	out, err := readCRILog(filepath.Join(logDir, "run.log"))
	if err != nil {
		return "", err
	}
	if exit != 0 {
		return out, fmt.Errorf("container from %s exited with status %d", ref, exit)
	}
	return out, nil
}

func (d *Driver) waitExited(ctx context.Context, id string) (int32, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := d.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			return 0, fmt.Errorf("failed to get container status: %w", err)
		}
		if s := st.GetStatus(); s.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
			return s.GetExitCode(), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("failed to wait for container to exit: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// readCRILog returns the messages of a CRI log file ("TIMESTAMP STREAM P|F MESSAGE" lines),
// joining partial lines.
func readCRILog(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("failed to open container log: %w", err)
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) < 3 {
			continue
		}
		msg := ""
		if len(parts) == 4 {
			msg = parts[3]
		}
		b.WriteString(msg)
		if parts[2] != "P" {
			b.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("failed to read container log: %w", err)
	}
	return b.String(), nil
}

// ListKeys implements nodedriver.Driver by walking KeysRoot without following symlinks.
func (d *Driver) ListKeys(_ context.Context, node string) ([]nodedriver.Entry, error) {
	if err := d.checkNode(node); err != nil {
		return nil, err
	}
	var entries []nodedriver.Entry
	err := filepath.WalkDir(d.opts.KeysRoot, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if p == d.opts.KeysRoot && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if p == d.opts.KeysRoot {
			return nil
		}
		info, err := de.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // removed while walking
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(d.opts.KeysRoot, p)
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
		return nil, fmt.Errorf("failed to list keys tree %s: %w", d.opts.KeysRoot, err)
	}
	return entries, nil
}

// ReadKey implements nodedriver.Driver; it refuses to follow a symlink at relpath.
func (d *Driver) ReadKey(_ context.Context, node, relpath string) ([]byte, error) {
	if err := d.checkNode(node); err != nil {
		return nil, err
	}
	rel, err := nodedriver.CleanRelPath(relpath)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(d.opts.KeysRoot, filepath.FromSlash(rel))
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
		return nil, fmt.Errorf("failed to read key %s: not a regular file", rel)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("failed to read key %s: %w", rel, err)
	}
	return data, nil
}

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
