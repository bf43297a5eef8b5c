// Package conformance is `keysync conformance`: it runs the conformance features (package
// suites/conformance, the same bodies `go test ./suites` runs) against a lab or a real
// cluster, writes JUnit XML, and prints "N passed, N failed, N skipped". `keysync conformance
// report` turns `go test -json` output of the suites into the same JUnit and summary.
package conformance

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/suites/conformance"
	"github.com/keysync-dev/keysync/suites/conformance/report"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

type flagpole struct {
	labEnv, kubeconfig, junit    string
	labels, skipLabels           []string
	feature, skipFeatures, runID string
	syncTimeout                  time.Duration
	hooks                        nodedriver.Config
}

// NewCommand builds `keysync conformance`.
func NewCommand(s *cli.Streams) *cobra.Command {
	fp := &flagpole{hooks: nodedriver.NewConfig()}
	fp.hooks.FromEnv(os.Getenv)
	fp.hooks.Stderr = s.ErrOut
	cmd := &cobra.Command{
		Use:   "conformance",
		Short: "Run the conformance suites against a lab or cluster and write JUnit XML",
		Long: `Runs the conformance features (areas plain, kp, revocation, rotation, hygiene, bad-input)
against the lab described by --lab-env (default $KEYSYNC_LAB_ENV, else _out/lab.env in the
checkout), with the same bodies as 'go test ./suites'. Start a lab with 'make node-lab-up'.
Exit status 1 when any step failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runE(cmd, s, fp) },
	}
	f := cmd.Flags()
	f.StringVar(&fp.labEnv, "lab-env", "", "lab env file (default $"+conformance.EnvLabEnv+", else <checkout>/_out/lab.env)")
	f.StringVar(&fp.kubeconfig, "kubeconfig", "", "kubeconfig (default $"+conformance.EnvKubeconfig+", else the env file's KUBECONFIG)")
	f.StringVar(&fp.junit, "junit", "", "write JUnit XML to this file")
	f.StringSliceVar(&fp.labels, "labels", nil, "run only features with these labels (area=kp,area=plain)")
	f.StringSliceVar(&fp.skipLabels, "skip-labels", nil, "skip features with these labels")
	f.StringVar(&fp.feature, "feature", "", "run only features whose name matches this regexp")
	f.StringVar(&fp.skipFeatures, "skip-features", "", "skip features whose name matches this regexp")
	f.StringVar(&fp.runID, "run-id", "", "object name prefix of this run (default random)")
	f.DurationVar(&fp.syncTimeout, "sync-timeout", 90*time.Second, "how long to wait for the synchronizer")
	gofs := flag.NewFlagSet("hooks", flag.ContinueOnError)
	fp.hooks.RegisterFlags(gofs)
	f.AddGoFlagSet(gofs)
	cmd.AddCommand(newReportCommand(s), newCleanupCommand(s))
	return cmd
}

// ParseLabels parses key=value selectors into e2e-framework's label map.
func ParseLabels(items []string) (map[string][]string, error) {
	if len(items) == 0 {
		return nil, nil
	}
	m := map[string][]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(strings.TrimSpace(it), "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("invalid label %q: want key=value", it)
		}
		m[k] = append(m[k], v)
	}
	return m, nil
}

func compile(name, expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("invalid --%s: %w", name, err)
	}
	return re, nil
}

func runE(cmd *cobra.Command, s *cli.Streams, fp *flagpole) error {
	ctx := cmd.Context()
	labels, err := ParseLabels(fp.labels)
	if err != nil {
		return err
	}
	skipLabels, err := ParseLabels(fp.skipLabels)
	if err != nil {
		return err
	}
	feature, err := compile("feature", fp.feature)
	if err != nil {
		return err
	}
	skipFeatures, err := compile("skip-features", fp.skipFeatures)
	if err != nil {
		return err
	}
	// ctx is main's: cancelled by SIGINT/SIGTERM. The guard removes what the run created on a
	// context of its own, whichever way the run ends (interrupt.go in suites/conformance).
	guard, runCtx := conformance.NewGuard(ctx, s.ErrOut)
	c, _, err := conformance.NewContext(runCtx, conformance.Options{LabEnv: fp.labEnv, Kubeconfig: fp.kubeconfig,
		Hooks: fp.hooks, RunID: fp.runID, SyncTimeout: fp.syncTimeout, Logger: s.Logger, Guard: guard})
	if err != nil {
		if _, cerr := guard.Cleanup(ctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return interrupted(ctx, err)
	}
	start := time.Now()
	fmt.Fprintf(s.ErrOut, "running conformance against the %s lab (driver %s, run ID %s)\n", c.Lab.Lab, c.Driver.Name(), c.RunID)
	cases := conformance.Run(runCtx, c, conformance.Features(), conformance.RunOptions{
		Labels: labels, SkipLabels: skipLabels, Feature: feature, SkipFeatures: skipFeatures, Progress: s.ErrOut})
	cctx, cancel := contextWithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if leaked, err := c.DeleteLeftovers(cctx, c.RunID); err != nil || len(leaked) > 0 {
		cases = append(cases, report.Case{Suite: "cleanup", Name: "no leftovers", Status: report.Failed,
			Message: fmt.Sprintf("Secrets left behind (now deleted): %v %v", leaked, err)})
	}
	removed, err := guard.Cleanup(cctx)
	if ctx.Err() != nil {
		fmt.Fprintf(s.ErrOut, "interrupted: removed %d object(s) the run had created %v\n", len(removed), removed)
	}
	if err != nil {
		cases = append(cases, report.Case{Suite: "cleanup", Name: "run removed", Status: report.Failed,
			Message: fmt.Sprintf("%v; run `keysync conformance cleanup --run-id %s`", err, c.RunID)})
	}
	return interrupted(ctx, finish(s, fp.junit, "keysync conformance", cases, time.Since(start), false))
}

// ExitInterrupted is the exit status of a run stopped by SIGINT or SIGTERM (after cleanup).
const ExitInterrupted = 130

// interrupted turns err into exit status ExitInterrupted when ctx (main's, signal-aware) was
// cancelled.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	if err == nil {
		err = errors.New("conformance run interrupted")
	}
	return &cli.ExitError{Code: ExitInterrupted, Err: fmt.Errorf("interrupted (everything the run created was removed): %w", err)}
}

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// finish writes the JUnit file, prints the summary line and turns failures into exit 1.
func finish(s *cli.Streams, junitPath, name string, cases []report.Case, took time.Duration, printFailures bool) error {
	if junitPath != "" {
		if err := writeJUnit(junitPath, name, cases); err != nil {
			return err
		}
	}
	for _, c := range cases {
		if printFailures && c.Status == report.Failed {
			fmt.Fprintf(s.ErrOut, "FAIL %s/%s\n%s\n", c.Suite, c.Name, indent(c.Message))
		}
	}
	line := report.Summary(cases)
	if took > 0 {
		line += fmt.Sprintf(" in %.1fs", took.Seconds())
	}
	fmt.Fprintln(s.Out, line)
	if _, failed, _ := report.Counts(cases); failed > 0 {
		return &cli.ExitError{Code: 1, Err: fmt.Errorf("%d conformance steps failed", failed)}
	}
	if len(cases) == 0 {
		return &cli.ExitError{Code: 1, Err: errors.New("no conformance results")}
	}
	return nil
}

func writeJUnit(path, name string, cases []report.Case) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("failed to create JUnit directory: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("failed to create JUnit file: %w", err)
	}
	if err := report.WriteJUnit(f, name, cases); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close JUnit file: %w", err)
	}
	return nil
}

func newReportCommand(s *cli.Streams) *cobra.Command {
	var in, junit string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Convert `go test -json` output of the suites into JUnit XML and a summary line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := s.In
			if in != "" && in != "-" {
				f, err := os.Open(in)
				if err != nil {
					return fmt.Errorf("failed to open go test output: %w", err)
				}
				defer f.Close()
				r = f
			}
			cases, err := report.FromGoTestJSON(r)
			if err != nil {
				return err
			}
			return finish(s, junit, "go test ./suites", cases, 0, true)
		},
	}
	cmd.Flags().StringVar(&in, "go-test-json", "-", "`go test -json` output file (- for stdin)")
	cmd.Flags().StringVar(&junit, "junit", "", "write JUnit XML to this file")
	return cmd
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
