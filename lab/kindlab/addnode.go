package kindlab

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/lab"
)

// workerRunArgs are the docker run arguments kind v0.33.0 uses for a worker node (docker
// provider: commonArgs + runArgsForNode), so an added node looks like the others to kind (its
// cluster label makes `kind-lab down` delete it too).
func workerRunArgs(cluster, name, image string) []string {
	return []string{"run",
		"--detach", "--tty",
		"--label", "io.x-k8s.kind.cluster=" + cluster,
		"--net", KindNetwork,
		"--restart=on-failure:1", "--init=false", "--cgroupns=private",
		"--hostname", name,
		"--label", "io.x-k8s.kind.role=worker",
		"--privileged",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--tmpfs", "/tmp", "--tmpfs", "/run",
		"--volume", "/var",
		"--volume", "/lib/modules:/lib/modules:ro",
		"--name", name,
		image,
	}
}

// AddWorker adds a worker node named name to the running lab, as kind would have created it,
// joins it with kubeadm (CRI-O socket), routes the pod networks, waits until it is Ready and
// rewrites the env file with the new node list. The synchronizer DaemonSet then schedules a pod
// on it by itself.
func (l *Lab) AddWorker(ctx context.Context, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	env, err := lab.LoadEnv(l.Opts.EnvPath)
	if err != nil {
		return fmt.Errorf("failed to load the lab (is it up?): %w", err)
	}
	l.Env = env
	if slices.Contains(l.Env.Nodes, name) {
		return fmt.Errorf("node %s is already in the lab", name)
	}
	image, err := docker(ctx, nil, "inspect", "-f", "{{.Config.Image}}", l.controlPlane())
	if err != nil {
		return fmt.Errorf("failed to find the node image: %w", err)
	}
	if _, err := docker(ctx, nil, workerRunArgs(l.Opts.Name, name, image)...); err != nil {
		return fmt.Errorf("failed to create node %s: %w", name, err)
	}
	for {
		if _, err := docker(ctx, nil, "exec", name, "test", "-S", "/var/run/crio/crio.sock"); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRI-O did not start on node %s: %w", name, ctx.Err())
		case <-time.After(time.Second):
		}
	}
	join, err := docker(ctx, nil, "exec", l.controlPlane(), "kubeadm", "token", "create", "--ttl", "10m", "--print-join-command")
	if err != nil {
		return fmt.Errorf("failed to create a join token: %w", err)
	}
	argv := strings.Fields(join)
	if len(argv) < 3 || argv[0] != "kubeadm" || argv[1] != "join" {
		return fmt.Errorf("unexpected join command from kubeadm (%d words)", len(argv))
	}
	argv = append(append([]string{"exec", name}, argv...), "--cri-socket", CRISocket, "--skip-phases=preflight")
	if _, err := docker(ctx, nil, argv...); err != nil {
		return fmt.Errorf("failed to join node %s: %w", name, err)
	}
	l.Env.Nodes = append(l.Env.Nodes, name)
	slices.Sort(l.Env.Nodes)
	if _, err := l.RoutePodNetworks(ctx, time.Until(deadline(ctx))); err != nil {
		return err
	}
	if _, err := l.adminKubectl(ctx, "wait", "--for=condition=Ready", "node/"+name, "--timeout=180s"); err != nil {
		return fmt.Errorf("node %s not Ready: %w", name, err)
	}
	return lab.WriteEnv(l.Opts.EnvPath, l.Env)
}

func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(2 * time.Minute)
}
