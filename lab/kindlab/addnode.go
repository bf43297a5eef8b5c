package kindlab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/lab"
)

// workerRunArgs are the docker run arguments kind v0.33.0 uses for a worker node (docker
// provider: commonArgs + runArgsForNode), so an added node looks like the others to kind (its
// cluster label makes `keysync lab down --kind kind` delete it too).
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

// AddNode adds a worker node named name to the running lab, as kind would have created it,
// joins it with kubeadm (CRI-O socket), routes the pod networks, waits until it is Ready and
// rewrites the env file with the new node list. The synchronizer DaemonSet then schedules a pod
// on it by itself.
func (l *Lab) AddNode(ctx context.Context, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := l.loadEnv(); err != nil {
		return err
	}
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
	if err := l.nodeAuth(ctx, name); err != nil {
		return err
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

// RemoveNode takes a worker out of the running lab: it deletes the Node (the pod garbage
// collector then removes its pods, the synchronizer's among them), removes the node container
// with its volumes, drops the routes other nodes had to its pod network and rewrites the env
// file's node list. The control plane cannot be removed.
func (l *Lab) RemoveNode(ctx context.Context, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := l.loadEnv(); err != nil {
		return err
	}
	if name == l.controlPlane() {
		return fmt.Errorf("node %s is the lab's control plane: remove the whole lab with `make lab-down`", name)
	}
	if !slices.Contains(l.Env.Nodes, name) {
		return fmt.Errorf("node %s is not in the lab (nodes: %s)", name, strings.Join(l.Env.Nodes, ", "))
	}
	cidrs, err := l.adminKubectl(ctx, "get", "node", name, "--ignore-not-found", "-o", "jsonpath={.spec.podCIDRs[*]}")
	if err != nil {
		return fmt.Errorf("failed to read node %s: %w", name, err)
	}
	if _, err := l.adminKubectl(ctx, "delete", "node", name, "--ignore-not-found"); err != nil {
		return fmt.Errorf("failed to delete node %s: %w", name, err)
	}
	if ok, err := containerExists(ctx, name); err != nil {
		return err
	} else if ok {
		if _, err := docker(ctx, nil, "rm", "-f", "-v", name); err != nil {
			return fmt.Errorf("failed to remove node container %s: %w", name, err)
		}
	}
	// The node is gone: the env file says so before anything else can fail.
	l.Env.Nodes = slices.DeleteFunc(l.Env.Nodes, func(n string) bool { return n == name })
	if err := lab.WriteEnv(l.Opts.EnvPath, l.Env); err != nil {
		return err
	}
	var errs []error
	for _, cidr := range strings.Fields(cidrs) {
		for _, n := range l.Env.Nodes {
			if _, err := docker(ctx, nil, "exec", n, "ip", "route", "del", cidr); err != nil && !strings.Contains(err.Error(), "No such process") {
				errs = append(errs, fmt.Errorf("failed to drop the route to %s's pods (%s) on node %s: %w", name, cidr, n, err))
			}
		}
	}
	return errors.Join(errs...)
}

// loadEnv reads the running lab's env file into l.Env.
func (l *Lab) loadEnv() error {
	env, err := lab.LoadEnv(l.Opts.EnvPath)
	if err != nil {
		return fmt.Errorf("failed to load the lab (is it up?): %w", err)
	}
	l.Env = env
	return nil
}
