// Package nodeagent is `keysync node-agent`: the node half of the suites' cluster driver
// (suites/nodedriver/cluster). It runs in one pod per node of a real cluster, with the node's
// keys tree and CRI socket mounted, and answers the node operations under the command-hook
// contract of package nodedriver (stdout is the answer; exit 3 = unsupported, 4 = not found):
//
//	keysync node-agent wait                 the pod's main process: sleeps until SIGTERM
//	keysync node-agent list-keys            "TYPE MODE SIZE PATH" lines of the keys tree
//	keysync node-agent read-key RELPATH     the file's bytes (regular files only, no symlink)
//	keysync node-agent pull-image REF       CRI PullImage (then removes what the pull added)
//
// Key bytes go to stdout only (to the suite that asked), never to a log.
package nodeagent

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/nodelab"
)

// Defaults: where the cluster driver mounts the node's paths inside the agent pod.
const (
	DefaultKeysRoot    = "/host/keys"
	DefaultCRIEndpoint = "unix:///host/cri.sock"
	// localNode is the name the agent gives its own node (it only ever serves that one).
	localNode = "local"
)

// NewCommand builds `keysync node-agent`.
func NewCommand(s *cli.Streams) *cobra.Command {
	var keysRoot, criEndpoint string
	cmd := &cobra.Command{
		Use:   "node-agent",
		Short: "Answer node operations inside a suites agent pod (used by the conformance suites' cluster driver)",
		Long: `Runs inside the pods the conformance suites' cluster driver deploys on every node of a
real cluster (DaemonSet keysync-node-agent), with the node's keys tree and CRI socket mounted.
Answers follow the node-driver command-hook contract: stdout is the answer, exit status 3
means unsupported, 4 not found.`,
	}
	cmd.PersistentFlags().StringVar(&keysRoot, "keys-root", DefaultKeysRoot, "the node's decryption_keys_path as mounted in this pod")
	cmd.PersistentFlags().StringVar(&criEndpoint, "cri", DefaultCRIEndpoint, "the node's CRI socket as mounted in this pod")
	// withDriver runs op with the node's driver (the local keys tree and CRI socket) and maps
	// its error to the contract's exit status.
	withDriver := func(op func(*nodelab.Driver) error) error {
		d, err := nodelab.New(nodelab.Options{Node: localNode, CRIEndpoint: criEndpoint, KeysRoot: keysRoot})
		if err != nil {
			return exit(err)
		}
		defer d.Close()
		return exit(op(d))
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "wait",
			Short: "sleep until SIGTERM (the agent pod's main process)",
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				<-c.Context().Done()
				return nil
			},
		},
		&cobra.Command{
			Use:   "list-keys",
			Short: "list the keys tree as TYPE MODE SIZE PATH lines",
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return withDriver(func(d *nodelab.Driver) error {
					entries, err := d.ListKeys(c.Context(), localNode)
					if err != nil {
						return err
					}
					return nodedriver.FormatListing(s.Out, entries)
				})
			},
		},
		&cobra.Command{
			Use:   "read-key RELPATH",
			Short: "print one file of the keys tree",
			Args:  cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return withDriver(func(d *nodelab.Driver) error {
					data, err := d.ReadKey(c.Context(), localNode, args[0])
					if err != nil {
						return err
					}
					_, err = s.Out.Write(data)
					return err
				})
			},
		},
		&cobra.Command{
			Use:   "pull-image REF",
			Short: "pull REF through the node's CRI (CRI-O decrypts with the keys tree), then remove what the pull added",
			Args:  cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return withDriver(func(d *nodelab.Driver) error { return d.PullImage(c.Context(), localNode, args[0]) })
			},
		},
	)
	return cmd
}

// exit maps errors to the hook contract's exit statuses.
func exit(err error) error {
	switch code := nodedriver.ContractExitCode(err); code {
	case 0, 1:
		return err
	case nodedriver.ExitNotFound:
		return &cli.ExitError{Code: code, Err: fmt.Errorf("not found: %w", err)}
	default:
		return &cli.ExitError{Code: code, Err: err}
	}
}
