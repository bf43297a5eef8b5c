package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
	"github.com/keysync-dev/keysync/suites/nodedriver/kind"
	"github.com/keysync-dev/keysync/suites/nodedriver/nodelab"
)

// DriverFactory builds the node driver of one node access (NODE_ACCESS). A driver with a Close() error
// method is closed when the run ends.
type DriverFactory func(ctx context.Context, in DriverInput) (nodedriver.Driver, error)

// DriverInput is what a DriverFactory builds from.
type DriverInput struct {
	Env    lab.Env
	Client kubernetes.Interface
	Config *rest.Config
	// CmdTimeout bounds one node operation (--hook-timeout).
	CmdTimeout time.Duration
	// SELinuxType is the agent pods' SELinux type (--agent-selinux-type; "" none).
	SELinuxType string
	Logger      *slog.Logger
	// RunID is the run's ID: what a driver creates in the cluster carries it
	// (names.LabelRunID) besides names.LabelManagedBy.
	RunID string
}

// runLabels are the labels of what a driver creates for the run.
func (in DriverInput) runLabels() map[string]string {
	if in.RunID == "" {
		return nil
	}
	return map[string]string{names.LabelManagedBy: names.ManagedBy, names.LabelRunID: in.RunID}
}

// DefaultDrivers reaches nodes by the lab's node access: on this host (host paths + CRI
// socket), by docker exec into node containers, or through agent pods (package cluster).
func DefaultDrivers() map[lab.NodeAccess]DriverFactory {
	return map[lab.NodeAccess]DriverFactory{
		lab.AccessDocker: func(_ context.Context, in DriverInput) (nodedriver.Driver, error) {
			return kind.New(kind.Options{Nodes: in.Env.Nodes, Client: in.Client, Logger: in.Logger, Labels: in.runLabels()})
		},
		lab.AccessHost: func(_ context.Context, in DriverInput) (nodedriver.Driver, error) {
			if len(in.Env.Nodes) != 1 {
				return nil, fmt.Errorf("NODE_ACCESS=%s reaches exactly one node (this host), the env file lists %d", lab.AccessHost, len(in.Env.Nodes))
			}
			return nodelab.New(nodelab.Options{Node: in.Env.Nodes[0], CRIEndpoint: in.Env.CRIEndpoint,
				KeysRoot: in.Env.KeysRoot, Logger: in.Logger})
		},
		lab.AccessPod: deployAgents,
	}
}

// deployAgents runs the node agents as a DaemonSet placed where the synchronizer runs: the
// suites check keys on those nodes.
func deployAgents(ctx context.Context, in DriverInput) (nodedriver.Driver, error) {
	env, client, logger := in.Env, in.Client, in.Logger
	ns := env.SyncerNamespace
	if ns == "" {
		ns = DefaultNamespace
	}
	var placement *corev1.PodSpec
	ds, err := client.AppsV1().DaemonSets(ns).Get(ctx, names.Addon, metav1.GetOptions{})
	switch {
	case err == nil:
		placement = cluster.PlacementOf(ds.Spec.Template.Spec)
	case apierrors.IsNotFound(err):
		logger.InfoContext(ctx, "no synchronizer DaemonSet with the runbook's name: node agents tolerate every taint", "namespace", ns, "name", names.Addon)
	default:
		return nil, fmt.Errorf("failed to read the synchronizer's DaemonSet %s/%s: %w", ns, names.Addon, err)
	}
	var pull []byte
	if env.Has(lab.CapRegistryAuth) && env.RegistryAuthFile != "" {
		// The agent image lives in the registry that requires credentials; the auth file is a
		// valid .dockerconfigjson.
		if pull, err = os.ReadFile(env.RegistryAuthFile); err != nil {
			return nil, fmt.Errorf("failed to read REGISTRY_AUTH_FILE for the node agent's pull Secret: %w", err)
		}
	}
	return cluster.Deploy(ctx, cluster.Options{Client: client, Config: in.Config, Image: env.NodeAgentImage, PullSecret: pull,
		KeysRoot: env.KeysRoot, CRISocket: env.CRIEndpoint, SELinuxType: in.SELinuxType, Placement: placement, CmdTimeout: in.CmdTimeout, Logger: logger,
		Labels: in.runLabels()})
}
