// Package kindlab is `keysync kind-lab up|down`: the kind lab (package lab/kindlab).
package kindlab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/lab"
	kl "github.com/keysync-dev/keysync/lab/kindlab"
)

// addonSteps are the steps --skip can name.
var addonSteps = []string{"fixtures", "mockkp", "syncer"}

// NewCommand builds `keysync kind-lab`.
func NewCommand(s *cli.Streams) *cobra.Command {
	var (
		opts    kl.Options
		root    string
		kubectl string
		skip    []string
		wait    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "kind-lab",
		Short: "The kind lab: a Kubernetes cluster on CRI-O nodes with the synchronizer addon (make lab-up)",
	}
	newLab := func() (*kl.Lab, error) {
		opts.Logger, opts.Out = s.Logger, s.ErrOut
		return kl.New(opts)
	}
	flags := func(c *cobra.Command) {
		c.Flags().StringVar(&opts.Name, "name", kl.DefaultName, "kind cluster name")
		c.Flags().StringVar(&opts.OutDir, "out", filepath.Join("_out", "kind"), "directory for the kubeconfig and lab files")
		c.Flags().StringVar(&opts.EnvPath, "lab-env", lab.DefaultEnvFile, "lab env file to write (read by the suites)")
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "create (or reuse) the cluster, registry, fixtures, mockkp and synchronizer; write the lab env file",
		RunE: func(c *cobra.Command, _ []string) error {
			for _, k := range skip {
				if !slices.Contains(addonSteps, k) {
					return fmt.Errorf("unknown step %q in --skip (want %s)", k, strings.Join(addonSteps, ", "))
				}
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("failed to find the keysync binary: %w", err)
			}
			absRoot, err := filepath.Abs(root)
			if err != nil {
				return fmt.Errorf("failed to resolve checkout: %w", err)
			}
			opts.Keysync = self
			parts := kl.Parts{Root: absRoot, Kubectl: kubectl}
			if !slices.Contains(skip, "fixtures") {
				opts.Steps = append(opts.Steps, kl.FixturesStep(parts))
			}
			if !slices.Contains(skip, "mockkp") {
				opts.Steps = append(opts.Steps, kl.MockKPStep(parts))
			}
			if !slices.Contains(skip, "syncer") {
				if kubectl == "" {
					return fmt.Errorf("--kubectl is required to deploy the synchronizer (hack/build-k8s.sh kubectl prints its directory)")
				}
				opts.Steps = append(opts.Steps, kl.SyncerStep(parts), kl.WaitSyncerStep(parts, wait))
			}
			l, err := newLab()
			if err != nil {
				return err
			}
			if _, err := l.Up(c.Context(), s.ErrOut); err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "kind lab %s is up\n  KUBECONFIG=%s\n  nodes: %s\n  registry: %s (push) = %s (nodes)\n",
				opts.Name, l.Env.Kubeconfig, strings.Join(l.Env.Nodes, ", "), kl.RegistryHostAddr, kl.RegistryNodeAddr)
			if l.Env.MockKPURL != "" {
				fmt.Fprintf(s.Out, "  mockkp: %s (host), %s (cluster)\n", l.Env.MockKPURL, l.Env.MockKPClusterURL)
			}
			if len(skip) > 0 {
				fmt.Fprintf(s.Out, "  skipped: %s\n", strings.Join(skip, ", "))
			}
			fmt.Fprintf(s.Out, "  lab env: %s\n", l.Opts.EnvPath)
			return nil
		},
	}
	flags(up)
	up.Flags().StringVar(&opts.NodeImage, "image", "", "node image (hack/build-node-image.sh prints it)")
	up.Flags().BoolVar(&opts.Retain, "retain", false, "keep the node containers when creation fails (debugging)")
	up.Flags().IntVar(&opts.Workers, "workers", 1, "number of worker nodes")
	up.Flags().StringVar(&root, "root", ".", "the keysync checkout (cmd/mockkp, cmd/keysync-syncer, syncer/deploy)")
	up.Flags().StringVar(&kubectl, "kubectl", "", "kubectl binary")
	up.Flags().StringSliceVar(&skip, "skip", nil, "addon steps to leave out: "+strings.Join(addonSteps, ","))
	up.Flags().DurationVar(&wait, "wait", 3*time.Minute, "how long to wait for one synchronizer pod per node")
	down := &cobra.Command{
		Use:   "down",
		Short: "delete the cluster, registry and mockkp containers, and the lab env file",
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := newLab()
			if err != nil {
				return err
			}
			return l.Down(c.Context(), s.ErrOut)
		},
	}
	flags(down)
	// workerCommand is add-worker or remove-worker: one node NAME, a timeout, a summary line.
	workerCommand := func(use, short, done string, timeout time.Duration, fn func(*kl.Lab, context.Context, string, time.Duration) error) *cobra.Command {
		var limit time.Duration
		wc := &cobra.Command{
			Use:   use + " NAME",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				l, err := newLab()
				if err != nil {
					return err
				}
				start := time.Now()
				if err := fn(l, c.Context(), args[0], limit); err != nil {
					return err
				}
				fmt.Fprintf(s.Out, "node %s %s in %.1fs; nodes: %s\n", args[0], done, time.Since(start).Seconds(), strings.Join(l.Env.Nodes, ", "))
				return nil
			},
		}
		flags(wc)
		wc.Flags().DurationVar(&limit, "timeout", timeout, "how long it may take")
		return wc
	}
	add := workerCommand("add-worker", "add a worker node to the running lab (kubeadm join over CRI-O, Ready) and update the lab env file",
		"joined", 4*time.Minute, (*kl.Lab).AddNode)
	remove := workerCommand("remove-worker", "remove a worker node from the running lab (Node object, container, routes) and update the lab env file",
		"removed", 2*time.Minute, (*kl.Lab).RemoveNode)
	cmd.AddCommand(up, down, add, remove)
	return cmd
}
