// Package doctor is `keysync doctor`: the addon runbook's troubleshooting list
// (internal/doctor) run against a cluster, one line per result or one JSON document.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/internal/doctor"
	"github.com/keysync-dev/keysync/internal/names"
)

// Exit codes of `keysync doctor`.
const (
	ExitClean     = 0 // every check passed (warnings and skipped checks allowed)
	ExitFailed    = 1 // at least one check failed (✗)
	ExitCannotRun = 2 // doctor could not run: bad flags, bad kubeconfig, API server unreachable
)

// InspectorFunc starts what reaches the nodes (e.g. short-lived agent pods) for one run and
// returns the inspector and a function that removes what it started and waits until it is
// gone. That function may come with an error too (a start that failed half-way): doctor calls
// it whenever it is not nil, also when interrupted.
type InspectorFunc func(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface) (doctor.NodeInspector, func(context.Context) error, error)

type flagpole struct {
	kubeconfig   string
	namespace    string
	output       string
	checkKP      bool
	allowHTTPKP  bool
	noNodeChecks bool
	eventWindow  time.Duration
	timeout      time.Duration
}

// NewCommand builds `keysync doctor` without node inspector: the node-side checks report
// skipped.
func NewCommand(s *cli.Streams) *cobra.Command { return NewCommandWith(s, nil) }

// NewCommandWith builds `keysync doctor` whose node-side checks go through the inspector that
// newInspector starts (nil: none configured).
func NewCommandWith(s *cli.Streams, newInspector InspectorFunc) *cobra.Command {
	var f flagpole
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check an Image Key Synchronizer deployment the way the addon runbook troubleshoots it",
		Long: `Runs the addon runbook's troubleshooting list against a cluster: the Namespace,
ServiceAccount, Role, RoleBinding and DaemonSet, one Running and Ready synchronizer pod per
schedulable node (and why a node has none), keyprotect-config (present, parseable, https; the
API key is never printed), Key Protect access (--check-kp), recent failure Events on key
Secrets, pulls failing with "missing private key needed for decryption", and on every node the
keys tree and CRI-O's decryption_keys_path.

One line per result: ✓ ok, ! warning, ✗ failed, - skipped; each says what was found and what
to do. -o json prints one document (schema ` + doctor.Schema + `). Failure Events of Secrets
and pods since deleted or replaced (a test run's, an old rollout's) are warnings, not failures;
more than 3 are summed up in one line per check.

Exit codes: 0 clean (warnings and skipped checks allowed), 1 a check failed or doctor could
not remove what it started on the nodes, 2 doctor could not run (bad flags, unreadable
kubeconfig, API server unreachable) or was interrupted (Ctrl-C, SIGTERM: it still removes what
it started).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return run(c.Context(), s, f, newInspector) },
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cannotRun(err) })
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster (default $KUBECONFIG)")
	fl.StringVar(&f.namespace, "namespace", names.Namespace, "the synchronizer's namespace")
	fl.StringVarP(&f.output, "output", "o", "text", "text (one line per result) or json")
	fl.BoolVar(&f.checkKP, "check-kp", false, "get an IAM token and read key metadata from Key Protect with keyprotect-config")
	fl.BoolVar(&f.allowHTTPKP, "allow-http-kp", false, "report an http:// keyprotect-url as a warning, not a failure (labs whose mock Key Protect serves http)")
	fl.BoolVar(&f.noNodeChecks, "no-node-checks", false, "skip the checks that need an agent pod on every node")
	fl.DurationVar(&f.eventWindow, "event-window", time.Hour, "how far back Events count")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up after this long")
	return cmd
}

func cannotRun(err error) error { return &cli.ExitError{Code: ExitCannotRun, Err: err} }

func run(ctx context.Context, s *cli.Streams, f flagpole, newInspector InspectorFunc) error {
	logger := s.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if f.output != "text" && f.output != "json" {
		return cannotRun(fmt.Errorf("unknown --output %q: want text or json", f.output))
	}
	if f.kubeconfig == "" {
		return cannotRun(errors.New("no --kubeconfig (and $KUBECONFIG is empty)"))
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	cfg, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		return cannotRun(fmt.Errorf("failed to load kubeconfig %s: %w", f.kubeconfig, err))
	}
	cfg.Timeout = 30 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return cannotRun(fmt.Errorf("failed to create a client from %s: %w", f.kubeconfig, err))
	}
	if err := doctor.Preflight(ctx, cs); err != nil {
		return cannotRun(err)
	}
	env := doctor.Env{Client: cs, Namespace: f.namespace, CheckKP: f.checkKP, AllowHTTPKP: f.allowHTTPKP, EventWindow: f.eventWindow}
	var cleanup func(context.Context) error
	switch {
	case f.noNodeChecks:
		env.NoInspectorReason = "--no-node-checks"
	case newInspector == nil:
		env.NoInspectorReason = "this keysync has no node agent for doctor yet"
	default:
		var insp doctor.NodeInspector
		insp, cleanup, err = newInspector(ctx, cfg, cs)
		switch {
		case errors.Is(err, ErrSkipNodeChecks):
			env.NoInspectorReason = err.Error()
		case err != nil:
			env.Inspector = failedInspector{fmt.Errorf("failed to start the node agent: %w", err)}
		default:
			env.Inspector = insp
		}
	}
	rep := doctor.Run(ctx, env, doctor.Checks())
	interrupted := parent.Err() != nil // a signal during the cleanup below leaves the results whole
	if f.output == "json" {
		err = doctor.WriteJSON(s.Out, rep)
	} else {
		err = doctor.WriteText(s.Out, rep)
	}
	var errs []error
	if err != nil {
		errs = append(errs, cannotRun(err))
	}
	if cleanup != nil {
		// Also when interrupted or past --timeout: a context of its own, bounded by the
		// inspector's cleanup timeout.
		start := time.Now()
		logger.Info("removing doctor's node agent")
		if err := cleanup(context.WithoutCancel(ctx)); err != nil {
			errs = append(errs, &cli.ExitError{Code: ExitFailed, Err: err})
		} else {
			logger.Info("doctor's node agent removed", "took", time.Since(start).Round(100*time.Millisecond))
		}
	}
	if interrupted { // first: its exit code wins
		errs = append([]error{cannotRun(fmt.Errorf("interrupted, the results are incomplete: %w", context.Cause(parent)))}, errs...)
	}
	if rep.Failed() && !interrupted {
		errs = append(errs, &cli.ExitError{Code: ExitFailed, Err: fmt.Errorf("%d check result(s) failed", rep.Summary.Fail)})
	}
	return firstCode(errs)
}

// firstCode joins errs (one line each) into one error with the exit code of the first.
func firstCode(errs []error) error {
	var ee *cli.ExitError
	switch {
	case len(errs) == 0:
		return nil
	case len(errs) == 1 || !errors.As(errs[0], &ee):
		return errs[0]
	}
	return &cli.ExitError{Code: ee.Code, Err: errors.Join(errs...)}
}

// failedInspector reports, for every node, why the node side could not be reached.
type failedInspector struct{ err error }

func (f failedInspector) Audit(context.Context, string) ([]doctor.Verdict, error) { return nil, f.err }
func (f failedInspector) DecryptionKeysPath(context.Context, string) (string, error) {
	return "", f.err
}
