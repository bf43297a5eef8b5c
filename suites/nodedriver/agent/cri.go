package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// Pull pulls ref through the CRI (ImageService.PullImage, as the kubelet would; CRI-O decrypts
// with the keys tree). An image the pull added is removed again, so the node is left as it was
// found (CRI-O decrypts on every pull of a reference anyway, present or not). The error quotes
// the runtime.
func (n *Node) Pull(ctx context.Context, ref string) error {
	imageRef, added, err := n.pull(ctx, ref)
	if err != nil {
		return err
	}
	if added {
		n.removeImage(ctx, imageRef)
	}
	return nil
}

// pull pulls ref and reports whether the image was new on the node.
func (n *Node) pull(ctx context.Context, ref string) (imageRef string, added bool, err error) {
	before, err := n.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return "", false, fmt.Errorf("failed to get image status of %s: %w", ref, err)
	}
	n.opts.Logger.DebugContext(ctx, "CRI PullImage", "image", ref)
	resp, err := n.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Auth: authFor(ctx, ref)})
	if err != nil {
		return "", false, fmt.Errorf("failed to pull image %s: %w", ref, err)
	}
	return resp.GetImageRef(), before.GetImage() == nil, nil
}

// removeImage removes a pulled image by its ID: CRI-O answers RemoveImage of a repo-digest
// reference with success but keeps the image.
func (n *Node) removeImage(ctx context.Context, imageRef string) {
	if imageRef == "" {
		return
	}
	ctx = context.WithoutCancel(ctx)
	id := imageRef
	st, err := n.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: imageRef}})
	if err == nil && st.GetImage().GetId() != "" {
		id = st.GetImage().GetId()
	}
	if _, err := n.images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{
		Image: &runtimeapi.ImageSpec{Image: id}}); err != nil {
		n.opts.Logger.WarnContext(ctx, "failed to remove pulled image", "image", imageRef, "err", err)
	}
}

// Run pulls ref, runs it with args (replacing the image's CMD; nil keeps it) in a
// host-network pod sandbox (no CNI needed; CRI-O drops the infra container), waits for the
// container to exit and returns its log. A sandbox the node cannot create yields
// nodedriver.ErrUnsupported with CRI-O's reason. What the pull added is removed again.
func (n *Node) Run(ctx context.Context, ref string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, n.opts.RunTimeout)
	defer cancel()
	imageRef, added, err := n.pull(ctx, ref)
	if err != nil {
		return "", err
	}
	if added {
		defer n.removeImage(ctx, imageRef)
	}

	id := randomID()
	logDir := n.opts.LogDir
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
	sb, err := n.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbConfig})
	if err != nil {
		return "", fmt.Errorf("nodelab cannot create a pod sandbox to run %s (%v): %w", ref, err, nodedriver.ErrUnsupported)
	}
	sandboxID := sb.GetPodSandboxId()
	defer func() {
		bg := context.WithoutCancel(ctx)
		if _, err := n.rt.StopPodSandbox(bg, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sandboxID}); err != nil {
			n.opts.Logger.WarnContext(ctx, "failed to stop pod sandbox", "id", sandboxID, "err", err)
		}
		if _, err := n.rt.RemovePodSandbox(bg, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sandboxID}); err != nil {
			n.opts.Logger.WarnContext(ctx, "failed to remove pod sandbox", "id", sandboxID, "err", err)
		}
	}()

	ctr, err := n.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
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
	if _, err := n.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err != nil {
		return "", fmt.Errorf("failed to start container from %s: %w", ref, err)
	}
	exit, err := n.waitExited(ctx, ctrID)
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

func (n *Node) waitExited(ctx context.Context, id string) (int32, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := n.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
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

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
