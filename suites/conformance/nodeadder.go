package conformance

import (
	"context"
	"errors"
	"fmt"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// newNodeAdder returns the NodeAdder of the run, or nil: the --hook-add-node and
// --hook-remove-node commands when given (they override the lab's), else the lab's own
// ADD_NODE_CMD and REMOVE_NODE_CMD when it has capability add-node. Both run through the
// hook machinery (nodedriver.RunHook), with the node name as their argument. driverFor
// returns a driver that reaches the new node.
func newNodeAdder(env lab.Env, hooks nodedriver.Config, suite nodedriver.Driver,
	driverFor func(ctx context.Context, node string) (nodedriver.Driver, error)) NodeAdder {
	switch {
	case hooks.AddNodeCmd != nil:
		return &hookNodeAdder{hooks: hooks, driverFor: func(context.Context, string) (nodedriver.Driver, error) { return suite, nil }}
	case env.Has(lab.CapAddNode) && env.AddNodeCmd != "":
		hooks.AddNodeCmd = nodedriver.ParseCommand(env.AddNodeCmd)
		hooks.RemoveNodeCmd = nodedriver.ParseCommand(env.RemoveNodeCmd)
		return &hookNodeAdder{hooks: hooks, driverFor: driverFor, fromLab: true}
	}
	return nil
}

// hookNodeAdder adds and removes nodes through command hooks: --hook-add-node and
// --hook-remove-node (any cluster), or the lab's ADD_NODE_CMD and REMOVE_NODE_CMD.
type hookNodeAdder struct {
	hooks     nodedriver.Config
	driverFor func(ctx context.Context, node string) (nodedriver.Driver, error)
	// fromLab: the commands are the lab env file's.
	fromLab bool
}

func (a *hookNodeAdder) AddNode(ctx context.Context, name string) (nodedriver.Driver, error) {
	if _, err := nodedriver.RunHook(ctx, a.hooks.CmdTimeout, a.hooks.Stderr, "add node "+name, a.hooks.AddNodeCmd, name); err != nil {
		// A node may be half joined: take it out again where the run can.
		if a.hooks.RemoveNodeCmd != nil && !errors.Is(err, nodedriver.ErrUnsupported) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.hooks.CmdTimeout)
			defer cancel()
			if rerr := a.RemoveNode(rctx, name); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return nil, err
	}
	drv, err := a.driverFor(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("failed to reach the added node %s: %w", name, err)
	}
	return drv, nil
}

func (a *hookNodeAdder) RemoveNode(ctx context.Context, name string) error {
	if a.hooks.RemoveNodeCmd == nil {
		if a.fromLab {
			return fmt.Errorf("the lab env file has no REMOVE_NODE_CMD: node %s stays in the cluster: %w", name, nodedriver.ErrUnsupported)
		}
		return fmt.Errorf("no --hook-remove-node (or $%s): node %s stays in the cluster: %w",
			nodedriver.EnvHookRemoveNode, name, nodedriver.ErrUnsupported)
	}
	_, err := nodedriver.RunHook(ctx, a.hooks.CmdTimeout, a.hooks.Stderr, "remove node "+name, a.hooks.RemoveNodeCmd, name)
	return err
}
