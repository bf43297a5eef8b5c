// Package lab is `keysync lab up|down|status|add-node|remove-node|disrupt --kind node|kind|cluster`:
// one command shape for the three labs, each a lab.Lab (lab/nodelab, lab/kindlab,
// lab/clusterlab). Progress goes to stderr, results to stdout; status exits 1 unless every
// component is up. Each flag belongs to the kinds listed in flagKinds: a flag given for
// another kind is an error, never silently ignored.
package lab

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/clusterlab"
	"github.com/keysync-dev/keysync/lab/nodelab"
)

// kinds are the values of --kind.
var kinds = []string{lab.KindNode, lab.KindKind, lab.KindCluster}

// flagpole holds every flag of every kind; build turns the chosen kind's into its lab.
type flagpole struct {
	kind   string
	labEnv string
	out    string
	// synchronizer is --synchronizer: node, a command line or "none"; kind, a kustomize
	// directory or "none"; empty, the reference.
	synchronizer string
	nodeOpts     nodeFlags
	kindOpts     kindFlags
	clusterOpts  clusterFlags
	// timeout bounds add-node and remove-node.
	timeout time.Duration
}

// NewCommand builds `keysync lab`.
func NewCommand(s *cli.Streams) *cobra.Command {
	f := &flagpole{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Bring keysync's labs up and down: --kind node (Docker-free), kind (a kind cluster on CRI-O nodes) or cluster (any cluster)",
		Long: `One command for the three labs; each writes the lab env file the suites read.

  --kind node     registry, etcd, kube-apiserver, mockkp, CRI-O and the synchronizer as host
                  processes on loopback (root; make node-lab-up)
  --kind kind     a kind cluster on CRI-O nodes built offline, a registry, mockkp and the
                  synchronizer addon (make lab-up)
  --kind cluster  any cluster whose nodes run CRI-O with the synchronizer under test deployed:
                  checks it, pushes the fixtures and the node agent image to --registry
                  (make cluster-init); nothing is created in the cluster

up reconciles (what runs stays, what is missing is started), status tells the truth (exit 1
unless every component is up), down removes what up made.`,
		// Runnable with no arguments, so that an unknown subcommand fails instead of printing
		// help and exiting 0.
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.kind, "kind", "", "the lab: "+strings.Join(kinds, ", ")+" (required)")
	pf.StringVar(&f.labEnv, "lab-env", "", "the lab env file (default "+lab.DefaultEnvFile+"; cluster: _out/cluster.env)")
	pf.StringVar(&f.out, "out", "", "directory for the lab's files (kind: default _out/kind; cluster: default _out/cluster)")
	pf.StringVar(&f.synchronizer, "synchronizer", "", nodelab.SynchronizerHelp+
		`; kind: a kustomize directory applied once the lab's registry is up, or "none" (deploy yours after lab up)`)
	f.nodeOpts.bind(pf)
	f.kindOpts.bind(pf)
	f.clusterOpts.bind(pf)

	up := &cobra.Command{
		Use:   "up",
		Short: "Bring the lab up, or repair it; write the lab env file",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := f.build(c, s)
			if err != nil {
				return err
			}
			env, err := l.Up(c.Context(), s.ErrOut)
			if err != nil {
				return err
			}
			return printEnv(s, f.envPath(), env)
		},
	}
	down := &cobra.Command{
		Use:   "down",
		Short: "Remove what up made (the kind cluster, processes, containers, the env file)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := f.build(c, s)
			if err != nil {
				return err
			}
			return l.Down(c.Context(), s.ErrOut)
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Check every component; exit 1 unless all are up",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := f.build(c, s)
			if err != nil {
				return err
			}
			st, err := l.Status(c.Context())
			if err != nil {
				return err
			}
			if err := st.Write(s.Out); err != nil {
				return err
			}
			if !st.Ready() {
				return &cli.ExitError{Code: 1, Err: fmt.Errorf("the %s lab is not ready: `keysync lab up --kind %s` starts what is down", f.kind, f.kind)}
			}
			return nil
		},
	}
	nodeCmd := func(use, short, done string, def time.Duration, fn func(lab.NodeAdder) func(*cobra.Command, string) error) *cobra.Command {
		nc := &cobra.Command{
			Use:   use + " NAME",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				l, err := f.build(c, s)
				if err != nil {
					return err
				}
				adder, ok := l.(lab.NodeAdder)
				if !ok {
					return fmt.Errorf("the %s lab cannot add or remove nodes (the kind lab can)", f.kind)
				}
				start := time.Now()
				if err := fn(adder)(c, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(s.Out, "node %s %s in %.1fs\n", args[0], done, time.Since(start).Seconds())
				return nil
			},
		}
		nc.Flags().DurationVar(&f.timeout, "timeout", def, "how long it may take")
		return nc
	}
	add := nodeCmd("add-node", "Add a node to the running lab (kind: a worker joined over CRI-O, Ready) and update the env file", "joined",
		4*time.Minute, func(a lab.NodeAdder) func(*cobra.Command, string) error {
			return func(c *cobra.Command, name string) error { return a.AddNode(c.Context(), name, f.timeout) }
		})
	remove := nodeCmd("remove-node", "Remove a node from the running lab (Node object, container, routes) and update the env file", "removed",
		2*time.Minute, func(a lab.NodeAdder) func(*cobra.Command, string) error {
			return func(c *cobra.Command, name string) error { return a.RemoveNode(c.Context(), name, f.timeout) }
		})
	disrupt := &cobra.Command{
		Use:       "disrupt kill-syncer|restart-apiserver",
		Short:     "Break a part of the running lab on purpose and wait until it is back (the suites' faults area)",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"kill-syncer", "restart-apiserver"},
		RunE: func(c *cobra.Command, args []string) error {
			l, err := f.build(c, s)
			if err != nil {
				return err
			}
			d, ok := l.(lab.Disrupter)
			if !ok {
				return fmt.Errorf("the %s lab cannot disrupt its parts (the node and kind labs can)", f.kind)
			}
			start := time.Now()
			switch args[0] {
			case "kill-syncer":
				err = d.KillSyncer(c.Context(), s.ErrOut)
			case "restart-apiserver":
				err = d.RestartAPIServer(c.Context(), s.ErrOut)
			default:
				return fmt.Errorf("unknown disruption %q: want kill-syncer or restart-apiserver", args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "%s: back in %.1fs\n", args[0], time.Since(start).Seconds())
			return nil
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate-registry-password",
		Short: "Give the lab registry a new random password and rewrite the lab's auth file (REGISTRY_AUTH_FILE); nothing restarts",
		Long: `The env file's ROTATE_REGISTRY_PASSWORD_CMD: the registry's htpasswd gets a new random
password for user iamapikey (the registry rereads it), the lab's containers-auth.json the same.
Pull Secrets made with the old password stop working; the password is never printed.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := f.build(c, s)
			if err != nil {
				return err
			}
			rot, ok := l.(lab.RegistryRotator)
			if !ok {
				return fmt.Errorf("the %s lab cannot rotate its registry's password (the node and kind labs can)", f.kind)
			}
			if err := rot.RotateRegistryPassword(c.Context()); err != nil {
				return err
			}
			fmt.Fprintln(s.Out, "registry password rotated")
			return nil
		},
	}
	cmd.AddCommand(up, down, status, add, remove, disrupt, rotate)
	return cmd
}

// flagKinds lists, for each kind-specific flag, the kinds it applies to.
func flagKinds() map[string][]string {
	m := map[string][]string{"out": {lab.KindKind, lab.KindCluster}, "synchronizer": {lab.KindNode, lab.KindKind}}
	for _, n := range nodeFlagNames {
		m[n] = []string{lab.KindNode}
	}
	for _, n := range kindFlagNames {
		m[n] = []string{lab.KindKind}
	}
	for _, n := range clusterFlagNames {
		m[n] = []string{lab.KindCluster}
	}
	return m
}

// checkFlags validates --kind and refuses flags that belong to other kinds.
func (f *flagpole) checkFlags(fs *pflag.FlagSet) error {
	if f.kind == "" {
		return fmt.Errorf("--kind is required: one of %s", strings.Join(kinds, ", "))
	}
	if !slices.Contains(kinds, f.kind) {
		return fmt.Errorf("--kind %q: want one of %s", f.kind, strings.Join(kinds, ", "))
	}
	var errs []error
	for name, ks := range flagKinds() {
		if fl := fs.Lookup(name); fl != nil && fl.Changed && !slices.Contains(ks, f.kind) {
			errs = append(errs, fmt.Errorf("--%s applies to --kind %s, not %s", name, strings.Join(ks, "|"), f.kind))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// envPath is --lab-env or the kind's default.
func (f *flagpole) envPath() string {
	if f.labEnv != "" {
		return f.labEnv
	}
	if f.kind == lab.KindCluster {
		return clusterlab.DefaultEnvFile
	}
	return lab.DefaultEnvFile
}

// build makes the chosen kind's lab from the flags.
func (f *flagpole) build(c *cobra.Command, s *cli.Streams) (lab.Lab, error) {
	if err := f.checkFlags(c.Flags()); err != nil {
		return nil, err
	}
	switch f.kind {
	case lab.KindNode:
		return f.nodeLab()
	case lab.KindKind:
		return f.kindLab(s)
	default:
		return f.clusterLab(s)
	}
}

// printEnv prints what a user needs from the env file on stdout.
func printEnv(s *cli.Streams, path string, env lab.Env) error {
	caps := make([]string, len(env.Capabilities))
	for i, c := range env.Capabilities {
		caps[i] = string(c)
	}
	_, err := fmt.Fprintf(s.Out, "%s lab is up\n  lab env:      %s\n  kubeconfig:   %s\n  nodes:        %s\n  capabilities: %s\n  next:         make conformance LAB_ENV=%s (or keysync conformance --lab-env %s)\n",
		env.Lab, path, env.Kubeconfig, strings.Join(env.Nodes, ", "), strings.Join(caps, ","), path, path)
	return err
}
