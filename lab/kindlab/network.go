package kindlab

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// nodeNet is one node's pod network: its podCIDR and the address other nodes route it through.
type nodeNet struct{ name, cidr, ip string }

func (l *Lab) controlPlane() string { return l.Opts.Name + "-control-plane" }

// adminKubectl runs kubectl inside the control-plane node with the cluster admin credentials.
func (l *Lab) adminKubectl(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"exec", l.controlPlane(), "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"}, args...)
	return docker(ctx, nil, argv...)
}

// parseNodeNets parses "name podCIDR InternalIP" lines.
func parseNodeNets(out string) []nodeNet {
	var nets []nodeNet
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 {
			nets = append(nets, nodeNet{name: f[0], cidr: f[1], ip: f[2]})
		}
	}
	return nets
}

// routeCommands lists, per node, the `ip route replace` argv that send every other node's
// podCIDR through that node's InternalIP.
func routeCommands(nets []nodeNet) map[string][][]string {
	cmds := map[string][][]string{}
	for _, n := range nets {
		for _, m := range nets {
			if m.name != n.name {
				cmds[n.name] = append(cmds[n.name], []string{"ip", "route", "replace", m.cidr, "via", m.ip})
			}
		}
	}
	return cmds
}

// RoutePodNetworks waits until every node has a podCIDR, then routes the pod networks between
// the nodes (run it again after adding a node). Each node's own bridge conflist is written by
// keysync-cni.service inside the node.
func (l *Lab) RoutePodNetworks(ctx context.Context, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nets []nodeNet
	for {
		out, err := l.adminKubectl(ctx, "get", "nodes", "-o",
			`jsonpath={range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}`)
		if err == nil {
			nets = parseNodeNets(out)
			if len(nets) == len(l.Env.Nodes) {
				break
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("nodes without podCIDR after %s (have %d of %d): %v", timeout, len(nets), len(l.Env.Nodes), err)
		case <-time.After(time.Second):
		}
	}
	n := 0
	for node, cmds := range routeCommands(nets) {
		for _, c := range cmds {
			if _, err := docker(ctx, nil, append([]string{"exec", node}, c...)...); err != nil {
				return n, fmt.Errorf("failed to route pods on node %s: %w", node, err)
			}
			n++
		}
	}
	return n, nil
}

// configureNetwork is the bring-up step: routes, then every node Ready. kube-proxy runs as
// kubeadm deploys it (privileged: the nodes' runtime wrapper drops the capabilities a kind node
// made by an older dockerd cannot grant).
func (l *Lab) configureNetwork(ctx context.Context) (string, error) {
	routes, err := l.RoutePodNetworks(ctx, 2*time.Minute)
	if err != nil {
		return "", err
	}
	if _, err := l.adminKubectl(ctx, "wait", "--for=condition=Ready", "nodes", "--all", "--timeout=180s"); err != nil {
		return "", fmt.Errorf("nodes not Ready: %w", err)
	}
	return fmt.Sprintf("%d routes, %d nodes Ready", routes, len(l.Env.Nodes)), nil
}
