// Package lab is `keysync lab`: bring the labs up and down. `keysync lab node up|down|status`
// drives the Docker-free node lab (lab/nodelab); `serve` is its supervisor, started by up.
package lab

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/nodelab"
)

// NewCommand builds `keysync lab`.
func NewCommand(s *cli.Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Bring keysync's labs up and down",
	}
	cmd.AddCommand(newNodeCommand(s))
	return cmd
}

type flagpole struct {
	workDir    string
	envFile    string
	binDir     string
	crioBinDir string
	k8sBinDir  string
	sourceDir  string
}

func newNodeCommand(s *cli.Streams) *cobra.Command {
	f := &flagpole{}
	node := &cobra.Command{
		Use:   "node",
		Short: "The Docker-free node lab: registry, etcd, kube-apiserver, mockkp, CRI-O and the synchronizer on loopback",
		Long: `The node lab runs one "node" as host processes on loopback under one work dir: a registry,
etcd + kube-apiserver, a seeded mockkp, CRI-O (decryption_keys_path <work>/keys) and the
synchronizer (writing <work>/keys/synced). It pushes the fixtures and writes a kubeconfig and
the lab env file the suites read. Needs root. Usually run through make node-lab-up / node-lab-down,
which build the binaries it needs.`,
	}
	pf := node.PersistentFlags()
	pf.StringVar(&f.workDir, "work-dir", "_out/node-lab", "directory holding everything the lab writes and mounts")
	pf.StringVar(&f.envFile, "env-file", lab.DefaultEnvFile, "where to write the lab description (lab env file)")
	pf.StringVar(&f.binDir, "bin-dir", "", "directory with mockkp, keysync-syncer and keysync-runtime-wrapper (default: next to this binary)")
	pf.StringVar(&f.crioBinDir, "crio-bin-dir", os.Getenv("KEYSYNC_CRIO_BIN"), "directory with crio and pinns (hack/build-crio.sh; env KEYSYNC_CRIO_BIN)")
	pf.StringVar(&f.sourceDir, "source-dir", "", "directory inside the keysync checkout, to build the fixtures from (default: the working directory)")
	pf.StringVar(&f.k8sBinDir, "k8s-bin-dir", os.Getenv("KEYSYNC_K8S_BIN"), "directory with kube-apiserver and etcd (hack/build-k8s.sh; env KEYSYNC_K8S_BIN)")

	node.AddCommand(
		&cobra.Command{
			Use:   "up",
			Short: "Bring the node lab up, or reuse it when it is up",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				opts, err := f.options(s)
				if err != nil {
					return err
				}
				env, err := nodelab.Up(cmd.Context(), opts)
				if err != nil {
					return err
				}
				fmt.Fprintf(s.Out, "lab env file: %s\nkubeconfig:   %s\nCRI socket:   %s\n", opts.EnvFile, env.Kubeconfig, env.CRIEndpoint)
				return nil
			},
		},
		&cobra.Command{
			Use:   "down",
			Short: "Stop every process of the node lab and unmount what CRI-O mounted (keeps caches on disk)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				opts, err := f.options(s)
				if err != nil {
					return err
				}
				return nodelab.Down(cmd.Context(), opts)
			},
		},
		&cobra.Command{
			Use:   "status",
			Short: "Show the node lab's processes; fails when the lab is not up",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				opts, err := f.options(s)
				if err != nil {
					return err
				}
				return nodelab.Status(cmd.Context(), opts, s.Out)
			},
		},
		&cobra.Command{
			Use:    "serve",
			Short:  "Run the node lab's supervisor in the foreground (started by up)",
			Hidden: true,
			Args:   cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				opts, err := f.options(s)
				if err != nil {
					return err
				}
				return nodelab.Serve(cmd.Context(), opts)
			},
		},
	)
	return node
}

// options turns the flags into absolute paths.
func (f *flagpole) options(s *cli.Streams) (nodelab.Options, error) {
	self, err := os.Executable()
	if err != nil {
		return nodelab.Options{}, fmt.Errorf("failed to find the keysync binary: %w", err)
	}
	if f.binDir == "" {
		f.binDir = filepath.Dir(self)
	}
	opts := nodelab.Options{Self: self, Out: s.Out, Logger: s.Logger}
	for _, p := range []struct {
		dst *string
		src string
	}{{&opts.WorkDir, f.workDir}, {&opts.EnvFile, f.envFile}, {&opts.BinDir, f.binDir},
		{&opts.CRIOBinDir, f.crioBinDir}, {&opts.K8sBinDir, f.k8sBinDir}, {&opts.SourceDir, f.sourceDir}} {
		if p.src == "" {
			continue
		}
		abs, err := filepath.Abs(p.src)
		if err != nil {
			return nodelab.Options{}, fmt.Errorf("failed to resolve %s: %w", p.src, err)
		}
		*p.dst = abs
	}
	return opts, nil
}
