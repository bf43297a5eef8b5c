package conformance

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/internal/leftovers"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
)

// newCleanupCommand builds `keysync conformance cleanup`: what a killed run (SIGKILL, a lost
// node, a crashed runner) left in the cluster, found by label and removed.
func newCleanupCommand(s *cli.Streams) *cobra.Command {
	var kubeconfig, labEnv, runID, syncNS string
	var dryRun bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what killed conformance runs left in the cluster (by label)",
		Long: `Removes every object a keysync conformance run created and could not remove itself
(it was killed with SIGKILL, or its node or network went away): Secrets, Pods, Services,
ConfigMaps, the node agent's DaemonSet and namespace, a keyprotect-config the run made.
They are found by label across all namespaces: app.kubernetes.io/managed-by=keysync-suites,
and with --run-id only those whose keysync.dev/run-id is that run's (or one of its tests').
Nothing without the label is ever deleted. Without --run-id, a run that is still going (its
node agent Lease renewed within its duration) and what it made are left alone, and so is
the keysync-suites namespace suites/deploy/runner-rbac.yaml ships; stderr says what was
skipped and why. An identity that may not list a kind in every namespace (the runner's
role) looks in the synchronizer's namespace (--namespace), default and keysync-suites only,
and says so. Prints one line per removed object on stdout.
With --lab-env of a lab with capability plant, it also removes what runs planted in the
nodes' keys trees (area foreign): key files named ks-<run>-foreign.pem, symlinks to
<keys root>/../ks-<run>-symlink-target.pem and that file, and staged .keysync-plant-* files.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kubeconfig == "" && labEnv != "" {
				env, err := lab.LoadEnv(labEnv)
				if err != nil {
					return fmt.Errorf("failed to load lab env file %s: %w", labEnv, err)
				}
				kubeconfig = env.Kubeconfig
				if syncNS == "" {
					syncNS = env.SyncerNamespace
				}
			}
			if syncNS == "" {
				syncNS = names.Namespace
			}
			if kubeconfig == "" {
				return errors.New("no --kubeconfig (and $KUBECONFIG is empty, and no --lab-env)")
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("failed to load kubeconfig %s: %w", kubeconfig, err)
			}
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("failed to create a client from %s: %w", kubeconfig, err)
			}
			ctx, cancel := cmd.Context(), func() {}
			if timeout > 0 {
				ctx, cancel = contextWithTimeout(ctx, timeout)
			}
			defer cancel()
			fallback := []string{syncNS}
			for _, n := range []string{corev1.NamespaceDefault, cluster.DefaultNamespace} {
				if !slices.Contains(fallback, n) {
					fallback = append(fallback, n)
				}
			}
			r, err := leftovers.SweepReport(ctx, cs, leftovers.Options{RunID: runID, DryRun: dryRun, Fallback: fallback})
			removed := r.Removed
			verb := "removed"
			if dryRun {
				verb = "would remove"
			}
			for _, o := range removed {
				fmt.Fprintf(s.Out, "%s %s\n", verb, o)
			}
			for _, n := range r.Notes {
				fmt.Fprintf(s.ErrOut, "note: %s\n", n)
			}
			for _, sk := range r.Skipped {
				fmt.Fprintf(s.ErrOut, "skipped %s\n", sk)
			}
			scope := "every run"
			if runID != "" {
				scope = "run " + runID
			}
			fmt.Fprintf(s.ErrOut, "%s %d object(s) labelled %s (%s)\n", verb, len(removed), leftovers.Selector(), scope)
			return errors.Join(err, sweepPlanted(ctx, s, cs, labEnv, runID, dryRun))
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster (default $KUBECONFIG)")
	f.StringVar(&labEnv, "lab-env", "", "take the kubeconfig from this lab env file when --kubeconfig is not set")
	f.StringVar(&syncNS, "namespace", "", "the synchronizer's namespace, looked in when this identity may not list everywhere (default: --lab-env's SYNCER_NAMESPACE, else "+names.Namespace+")")
	f.StringVar(&runID, "run-id", "", "remove only what this run created (default: every keysync run's leftovers)")
	f.BoolVar(&dryRun, "dry-run", false, "list what would be removed, remove nothing")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	return cmd
}
