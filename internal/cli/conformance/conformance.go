// Package conformance is `keysync conformance`: it runs the conformance features (package
// suites/conformance, the same bodies `go test ./suites` runs) against a lab or a real
// cluster, writes JUnit XML and an HTML report, and prints the per-profile counts and then
// "N passed, N failed, N skipped" (", N warned" when recommended checks warned). `keysync
// conformance report` turns `go test -json` output of the suites into the same reports.
package conformance

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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

// conformanceTest is the go test function of package ./suites whose subtests are the checks.
const conformanceTest = "TestConformance"

type flagpole struct {
	labEnv, kubeconfig, junit    string
	html                         string
	profile                      conformance.Profile
	labels, skipLabels           []string
	feature, skipFeatures, runID string
	syncTimeout                  time.Duration
	p99SyncLatency               time.Duration
	hooks                        nodedriver.Config
	opts                         conformance.Options
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
Every check belongs to a profile: required (what the runbook and CRI-O promise) or
recommended (the reference synchronizer's stronger conventions). --profile required reports
failed recommended checks as warnings; the default, recommended, fails on both.
Exit status 1 when any step failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runE(cmd, s, fp) },
	}
	f := cmd.Flags()
	f.StringVar(&fp.labEnv, "lab-env", "", "lab env file (default $"+conformance.EnvLabEnv+", else <checkout>/_out/lab.env)")
	f.StringVar(&fp.kubeconfig, "kubeconfig", "", "kubeconfig (default $"+conformance.EnvKubeconfig+", else the env file's KUBECONFIG)")
	f.StringVar(&fp.junit, "junit", "", "write JUnit XML to this file")
	f.StringVar(&fp.html, "html", "", "write the HTML report to this file")
	f.Var(&fp.profile, "profile", "profile the run is judged by: required (failed recommended checks are warnings) or recommended (both fail)")
	f.StringSliceVar(&fp.labels, "labels", nil, "run only features with these labels (area=kp,area=plain)")
	f.StringSliceVar(&fp.skipLabels, "skip-labels", nil, "skip features with these labels")
	f.StringVar(&fp.feature, "feature", "", "run only features whose name matches this regexp")
	f.StringVar(&fp.skipFeatures, "skip-features", "", "skip features whose name matches this regexp")
	f.StringVar(&fp.runID, "run-id", "", "object name prefix of this run (default random)")
	f.DurationVar(&fp.syncTimeout, "sync-timeout", conformance.DefaultSyncTimeout, "how long to wait for the synchronizer (file appears or goes, Event recorded)")
	f.DurationVar(&fp.p99SyncLatency, "p99-sync-latency", conformance.DefaultP99SyncLatency, "the latency area's bound (recommended) on the p99 time from a key Secret's creation to its file on every node")
	gofs := flag.NewFlagSet("hooks", flag.ContinueOnError)
	fp.hooks.RegisterFlags(gofs)
	fp.opts.RegisterFlags(gofs, os.Getenv)
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
	o := fp.opts // the --kp-* and --agent-selinux-type flags
	o.LabEnv, o.Kubeconfig, o.Hooks, o.RunID, o.SyncTimeout, o.Logger = fp.labEnv, fp.kubeconfig, fp.hooks, fp.runID, fp.syncTimeout, s.Logger
	o.Profile, o.Guard, o.P99SyncLatency = fp.profile, guard, fp.p99SyncLatency
	c, _, err := conformance.NewContext(runCtx, o)
	if err != nil {
		if _, cerr := guard.Cleanup(ctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return interrupted(ctx, err)
	}
	start := time.Now()
	meta := c.Meta("keysync conformance", start)
	fmt.Fprintf(s.ErrOut, "running conformance against the %s lab (synchronizer %s, profile %s, driver %s, run ID %s)\n",
		c.Lab.Lab, meta.SynchronizerOrUnknown(), meta.Profile, c.Driver.Name(), c.RunID)
	cases, notSelected := conformance.Run(runCtx, c, conformance.Features(), conformance.RunOptions{
		Labels: labels, SkipLabels: skipLabels, Feature: feature, SkipFeatures: skipFeatures, Progress: s.ErrOut})
	meta.NotSelected = notSelected
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
	return interrupted(ctx, finish(s, outputs{junit: fp.junit, html: fp.html}, meta, cases, time.Since(start), false))
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

// outputs are the report files to write ("" = none).
type outputs struct{ junit, html string }

// finish writes the report files, prints the per-profile line and the summary line (last:
// CI reads it) and turns failures into exit 1.
func finish(s *cli.Streams, out outputs, m report.Meta, cases []report.Case, took time.Duration, printFailures bool) error {
	if out.junit != "" {
		if err := writeFile(out.junit, "JUnit", func(w io.Writer) error { return report.WriteJUnit(w, m, cases) }); err != nil {
			return err
		}
	}
	if out.html != "" {
		if err := writeFile(out.html, "HTML report", func(w io.Writer) error { return report.WriteHTML(w, m, cases, time.Now()) }); err != nil {
			return err
		}
	}
	for _, c := range cases {
		if printFailures && (c.Status == report.Failed || c.Status == report.Warned) {
			word, msg := "FAIL", c.Message
			if c.Status == report.Warned {
				word, msg = "WARN", report.WarnPrefix+msg
			}
			fmt.Fprintf(s.ErrOut, "%s %s/%s\n%s\n", word, c.Suite, c.Name, indent(msg))
		}
	}
	fmt.Fprintf(s.Out, "synchronizer: %s; profile: %s\n", m.SynchronizerOrUnknown(), orDefault(m.Profile, string(conformance.DefaultProfile)))
	if line := m.NotSelectedLine(); line != "" {
		fmt.Fprintln(s.Out, line)
	}
	fmt.Fprintln(s.Out, report.ProfileSummary(cases))
	line := report.Summary(cases)
	if took > 0 {
		line += fmt.Sprintf(" in %.1fs", took.Seconds())
	}
	fmt.Fprintln(s.Out, line)
	if _, failed, _ := report.Counts(cases); failed > 0 {
		return &cli.ExitError{Code: 1, Err: fmt.Errorf("%d conformance steps failed", failed)}
	}
	if len(cases) == 0 {
		if m.NotSelectedLine() != "" {
			return &cli.ExitError{Code: 1, Err: errors.New("no conformance results: the run's selection flags left out every feature")}
		}
		return &cli.ExitError{Code: 1, Err: errors.New("no conformance results")}
	}
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// writeFile writes a report atomically enough for CI: to a temp file beside path, renamed
// into place, so a failed write leaves no partial file.
func writeFile(path, what string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("failed to create %s directory: %w", what, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to create %s file: %w", what, err)
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("failed to set mode of %s file: %w", what, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close %s file: %w", what, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("failed to write %s file: %w", what, err)
	}
	return nil
}

func newReportCommand(s *cli.Streams) *cobra.Command {
	var in, junit, html, profile string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Convert `go test -json` output of the suites into JUnit XML, an HTML report and the summary lines",
		Long: `Reads 'go test -json ./suites' output and counts the conformance checks only (the leaves of
TestConformance: one feature's assessment against the lab; a feature skipped as a whole, or
whose setup failed, counts once), never other tests; skipped checks count as skipped with their
reason. Features and checks the run's selection flags left out (--labels, --skip-features,
--assess, ...) are no checks of the run: counted nowhere but on the "not selected" line (JUnit
property not-selected), named in the HTML report. A run whose selection left out everything
has no results and exits 1. Prints the per-profile line, then "N passed, N failed, N skipped" (", N warned").
--profile judges the run again under the other profile (report.Rejudge): the profiles run the
same checks, so one run yields both verdicts.`,
		Args: cobra.NoArgs,
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
			res, err := report.ParseGoTestJSON(r, report.GoTestOptions{Top: conformanceTest})
			if err != nil {
				return err
			}
			if res.Ignored > 0 {
				fmt.Fprintf(s.ErrOut, "note: %d tests outside %s are not conformance checks and are not counted\n", res.Ignored, conformanceTest)
			}
			m := res.Meta
			m.Title = "go test ./suites"
			m.NotSelected, m.NotSelectedChecks = res.NotSelected, res.NotSelectedChecks
			cases := res.Cases
			if profile != "" {
				if cases, err = report.Rejudge(cases, profile); err != nil {
					return err
				}
				m.Profile = profile
			}
			return finish(s, outputs{junit: junit, html: html}, m, cases, 0, true)
		},
	}
	cmd.Flags().StringVar(&in, "go-test-json", "-", "`go test -json` output file (- for stdin)")
	cmd.Flags().StringVar(&junit, "junit", "", "write JUnit XML to this file")
	cmd.Flags().StringVar(&html, "html", "", "write the HTML report to this file")
	cmd.Flags().StringVar(&profile, "profile", "", "judge the run under this profile (required|recommended; default: the run's own)")
	return cmd
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
