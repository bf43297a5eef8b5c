package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	utilexec "k8s.io/client-go/util/exec"

	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// ExecFunc runs command in the agent container of pod, streaming stdout and stderr. A command
// that ran and exited non-zero is an error implementing utilexec.ExitError (as client-go's
// remotecommand returns it); any other error means the exec itself failed.
type ExecFunc func(ctx context.Context, pod string, command []string, stdout, stderr io.Writer) error

// PodExec is the pod exec transport: each operation is the agent's command line
// (AgentCommand) exec'd in the node's agent pod. The Driver sets Pod and Exec to the API
// server's; a test can drive the same framing and exit-status mapping with its own.
type PodExec struct {
	// Pod names the node's ready agent pod.
	Pod func(ctx context.Context, node string) (string, error)
	// Exec runs a command in a pod.
	Exec ExecFunc
	// ExecStdin runs a command in a pod with stdin (pull and run --auth-stdin); nil: the
	// transport cannot pass credentials.
	ExecStdin func(ctx context.Context, pod string, command []string, stdin io.Reader, stdout, stderr io.Writer) error
	// KeysRoot and CRISocket are the host paths on the nodes (see Options).
	KeysRoot, CRISocket string
	// Timeout bounds one operation, the pod lookup included (0: none).
	Timeout time.Duration
	Logger  *slog.Logger
}

var _ nodedriver.StdinTransport = (*PodExec)(nil)

// RunAgent implements nodedriver.Transport.
func (p *PodExec) RunAgent(ctx context.Context, node string, args []string, stdout, stderr io.Writer) (int, error) {
	return p.RunAgentStdin(ctx, node, args, nil, stdout, stderr)
}

// RunAgentStdin implements nodedriver.StdinTransport.
func (p *PodExec) RunAgentStdin(ctx context.Context, node string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if stdin != nil && p.ExecStdin == nil {
		return 0, nodedriver.ErrNoStdin
	}
	if p.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.Timeout)
		defer cancel()
	}
	pod, err := p.Pod(ctx, node)
	if err != nil {
		return 0, err
	}
	if p.Logger != nil {
		p.Logger.DebugContext(ctx, "node agent", "node", node, "pod", pod, "args", args)
	}
	if stdin != nil {
		err = p.ExecStdin(ctx, pod, AgentCommand(p.KeysRoot, p.CRISocket, args...), stdin, stdout, stderr)
	} else {
		err = p.Exec(ctx, pod, AgentCommand(p.KeysRoot, p.CRISocket, args...), stdout, stderr)
	}
	return exitStatus(pod, err)
}

// exitStatus maps an exec's outcome to the agent's exit status: an ExitError carries it, any
// other error is the transport's.
func exitStatus(pod string, err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee utilexec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitStatus(), nil
	}
	return 0, fmt.Errorf("failed to exec the node agent in pod %s: %w", pod, err)
}
