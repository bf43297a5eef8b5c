// Package lab is `keysync lab`: bring the labs up and down. `keysync lab node up|down|status`
// drives the Docker-free node lab (lab/nodelab) through the lab.Lab interface: progress on
// stderr, results on stdout, status exits non-zero unless every component is up.
package lab

import (
	"errors"
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
		// Runnable with no arguments, so that an unknown subcommand (e.g. the former "serve")
		// fails instead of printing help.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
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
			Short: "Bring the node lab up, or repair it: keeps what runs, starts what is missing or stopped",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				l, opts, err := f.lab(s)
				if err != nil {
					return err
				}
				env, err := l.Up(cmd.Context(), s.ErrOut)
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
				l, _, err := f.lab(s)
				if err != nil {
					return err
				}
				return l.Down(cmd.Context(), s.ErrOut)
			},
		},
		&cobra.Command{
			Use:   "status",
			Short: "Show every process of the node lab; exits non-zero unless all of them run and are healthy",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				l, _, err := f.lab(s)
				if err != nil {
					return err
				}
				st, err := l.Status(cmd.Context())
				if err != nil {
					return err
				}
				if err := st.Write(s.Out); err != nil {
					return err
				}
				if !st.Ready() {
					return errors.New("node lab is not ready (make node-lab-up starts what is down)")
				}
				return nil
			},
		},
	)
	return node
}

// lab builds the node lab from the flags.
func (f *flagpole) lab(s *cli.Streams) (*nodelab.Lab, nodelab.Options, error) {
	opts, err := f.options(s)
	if err != nil {
		return nil, opts, err
	}
	l, err := nodelab.New(opts)
	return l, opts, err
}

// options turns the flags into absolute paths.
func (f *flagpole) options(s *cli.Streams) (nodelab.Options, error) {
	if f.binDir == "" {
		self, err := os.Executable()
		if err != nil {
			return nodelab.Options{}, fmt.Errorf("failed to find the keysync binary: %w", err)
		}
		f.binDir = filepath.Dir(self)
	}
	var opts nodelab.Options
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
