package doctor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/internal/doctor"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/agent"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
)

// ErrSkipNodeChecks is wrapped by an InspectorFunc's error when the node-side checks cannot
// run by configuration (no agent image): they are reported skipped with its message, not
// failed.
var ErrSkipNodeChecks = errors.New("node-side checks skipped")

// AgentNamespace is where doctor's short-lived node agent DaemonSet runs (created and removed
// again; labelled so that `keysync conformance cleanup` finds it if doctor is killed).
const AgentNamespace = "keysync-doctor"

// NewAgentCommand builds `keysync doctor` whose node-side checks run through a short-lived
// node agent DaemonSet (package suites/nodedriver/cluster): one pod per node, the keys tree
// and /etc/crio mounted read-only, removed when doctor ends (even on Ctrl-C). It needs the
// agent image (--agent-image, or NODE_AGENT_IMAGE of --lab-env's file, as `keysync lab up
// --kind cluster` pushes it); without one the node-side checks say skipped.
func NewAgentCommand(s *cli.Streams) *cobra.Command {
	var image, labEnv string
	var readyTimeout, cleanupTimeout time.Duration
	newInspector := func(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface) (doctor.NodeInspector, func(context.Context) error, error) {
		if image == "" {
			return nil, nil, fmt.Errorf("%w: no node agent image (pass --agent-image, or --lab-env with NODE_AGENT_IMAGE: `keysync lab up --kind cluster` pushes one)", ErrSkipNodeChecks)
		}
		return StartAgentInspector(ctx, cfg, cs, image, readyTimeout, cleanupTimeout)
	}
	cmd := NewCommandWith(s, newInspector)
	cmd.Long += `

The node-side checks run a short-lived node agent DaemonSet (namespace ` + AgentNamespace + `, every
taint tolerated, the keys tree and /etc/crio read-only), removed when doctor ends, Ctrl-C and
SIGTERM included: doctor waits until its namespace is gone (--cleanup-timeout) and fails if it
is not. They need the agent image: --agent-image, or NODE_AGENT_IMAGE of --lab-env's file
(` + "`keysync lab up --kind cluster`" + ` pushes one); without it they are skipped.`
	f := cmd.Flags()
	f.StringVar(&image, "agent-image", "", "node agent image every node can pull (keysync-node-agent), for the node-side checks")
	f.StringVar(&labEnv, "lab-env", "", "lab env file: its NODE_AGENT_IMAGE and KUBECONFIG are the defaults of --agent-image and --kubeconfig")
	f.DurationVar(&readyTimeout, "agent-ready-timeout", 2*time.Minute, "how long to wait for the node agent pods")
	f.DurationVar(&cleanupTimeout, "cleanup-timeout", DefaultCleanupTimeout, "how long to wait, when doctor ends, until the node agent and its namespace are gone")
	cmd.PreRunE = func(c *cobra.Command, _ []string) error {
		if labEnv == "" {
			return nil
		}
		env, err := lab.LoadEnv(labEnv)
		if err != nil {
			return cannotRun(fmt.Errorf("failed to load lab env file %s: %w", labEnv, err))
		}
		if image == "" {
			image = env.NodeAgentImage
		}
		if kc := c.Flags().Lookup("kubeconfig"); kc != nil && !kc.Changed && env.Kubeconfig != "" {
			if err := kc.Value.Set(env.Kubeconfig); err != nil {
				return cannotRun(err)
			}
		}
		return nil
	}
	return cmd
}

// StartAgentInspector deploys the node agent DaemonSet on every node (every taint tolerated:
// doctor looks at every node, also those the synchronizer misses) and returns the inspector
// and the function that removes the DaemonSet and its namespace and waits, up to
// cleanupTimeout, until they are gone. When the agent does not get ready it returns the error
// and that function too (the namespace may be terminating): call it whenever it is not nil. It
// is nil when the namespace could not be claimed (cluster.ClaimError: another doctor or run
// holds it, cluster.ErrBusy): nothing was created then.
func StartAgentInspector(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, image string, readyTimeout, cleanupTimeout time.Duration) (doctor.NodeInspector, func(context.Context) error, error) {
	runID := "doctor-" + time.Now().UTC().Format("150405")
	d, err := cluster.Deploy(ctx, cluster.Options{Client: cs, Config: cfg, Image: image, Namespace: AgentNamespace,
		KeysRoot: names.KeysRoot, CRIOConfigDir: agent.DefaultCRIOConfigDir, ReadyTimeout: readyTimeout,
		CmdTimeout: time.Minute, Labels: map[string]string{names.LabelManagedBy: names.ManagedBy, names.LabelRunID: runID}})
	var claimErr *cluster.ClaimError
	switch {
	case errors.As(err, &claimErr):
		// Not claimed (another doctor or run holds the namespace's Lease: ErrBusy): nothing of
		// this doctor's is there to wait for, and what is there is another run's.
		return nil, nil, err
	case err != nil:
		// Deploy removed what it had created; wait until it is gone.
		return nil, func(ctx context.Context) error { return WaitAgentGone(ctx, cs, cleanupTimeout) }, err
	}
	remove := func(ctx context.Context) error {
		if err := d.Close(); err != nil {
			return fmt.Errorf("failed to remove the node agent: %w", err)
		}
		return WaitAgentGone(ctx, cs, cleanupTimeout)
	}
	return AgentInspector{Agent: d.Agent}, remove, nil
}

// AgentInspector is doctor.NodeInspector over the node agent protocol: the audit runs on the
// node (verdicts and digests, never key bytes) and CRI-O's configuration is read there
// (crio-keys-path on the agent pod's read-only /etc/crio).
type AgentInspector struct {
	Agent *nodedriver.Agent
	// CRIOConfigDir is where the agent sees CRI-O's configuration (default: the cluster
	// driver's mount, cluster.CRIOConfigMount).
	CRIOConfigDir string
}

var _ doctor.NodeInspector = AgentInspector{}

// Audit implements doctor.NodeInspector.
func (a AgentInspector) Audit(ctx context.Context, node string) ([]doctor.Verdict, error) {
	entries, err := a.Agent.AuditKeys(ctx, node)
	if err != nil {
		return nil, err
	}
	out := make([]doctor.Verdict, 0, len(entries))
	for _, e := range entries {
		v := doctor.Verdict{Path: e.Path, Type: entryType(e.Type), Mode: e.Mode, Size: e.Size,
			Accepted: e.Verdict == nodedriver.VerdictOK, SHA256: e.SHA256}
		if err := e.Verdict.Err(); err != nil {
			v.Why = err.Error()
		}
		out = append(out, v)
	}
	return out, nil
}

// DecryptionKeysPath implements doctor.NodeInspector.
func (a AgentInspector) DecryptionKeysPath(ctx context.Context, node string) (string, error) {
	dir := a.CRIOConfigDir
	if dir == "" {
		dir = cluster.CRIOConfigMount
	}
	p, _, err := a.Agent.CRIOKeysPath(ctx, node, dir)
	return p, err
}

func entryType(t nodedriver.EntryType) doctor.EntryType {
	switch t {
	case nodedriver.TypeFile:
		return doctor.TypeFile
	case nodedriver.TypeDir:
		return doctor.TypeDir
	case nodedriver.TypeSymlink:
		return doctor.TypeSymlink
	}
	return doctor.TypeOther
}
