package mutants

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/nodelab"
	"github.com/keysync-dev/keysync/suites/conformance"
	"github.com/keysync-dev/keysync/suites/conformance/report"
)

// Reference is the control row: the unbroken synchronizer, which must pass every area the
// mutants use (else a kill proves nothing).
const Reference = "reference"

// Config says how to run the mutants.
type Config struct {
	// Up is the `keysync lab up --kind node ...` command line; --synchronizer is appended.
	Up []string
	// MutantBin is keysync-syncer built with the keysync_mutants tag.
	MutantBin string
	// LabEnv is the env file Up writes (absolute).
	LabEnv string
	// GoTest runs the suites: the command up to the package (e.g. go test), run in Root.
	GoTest []string
	Root   string
	// SyncTimeout is the suite's --sync-timeout.
	SyncTimeout time.Duration
	// Log receives progress.
	Log io.Writer
}

// Failure is one failed check of a run.
type Failure struct {
	Feature, Step, Message string
}

// Result is one mutant's run.
type Result struct {
	Mutant   Mutant
	Failures []Failure
	// Err is a failure of the harness (lab up, suite did not run): the run proves nothing.
	Err      error
	Duration time.Duration
}

// Killed reports whether the suite failed the mutant.
func (r Result) Killed() bool { return r.Err == nil && len(r.Failures) > 0 }

// FailedFeatures returns the failed features in order, without repeats.
func (r Result) FailedFeatures() []string {
	var out []string
	for _, f := range r.Failures {
		if !slices.Contains(out, f.Feature) {
			out = append(out, f.Feature)
		}
	}
	return out
}

// ByExpected reports whether an expected feature failed (not only an unrelated one).
func (r Result) ByExpected() bool {
	for _, f := range r.FailedFeatures() {
		if slices.Contains(r.Mutant.Expect, f) {
			return true
		}
	}
	return false
}

// CommandLine is the --synchronizer value for mutant name (Reference: none switched on).
func CommandLine(bin, name string) string {
	s := bin + " --kubeconfig {kubeconfig} --keys-dir {keys-dir} --staging-dir {staging-dir} --namespace {namespace}" +
		" --node-name {node-name} --allow-insecure-kp --metrics-addr= --probe-addr=" +
		// A short resync: the reference never unwraps again on one, unwrap-every-sync does.
		" --resync-period 5s"
	if name != Reference {
		s += " --mutant " + name
	}
	return s
}

// ReferenceRow is the control: every area the mutants use.
func ReferenceRow(table []Mutant) Mutant {
	m := Mutant{Name: Reference, Defect: "none (control: must pass)"}
	for _, t := range table {
		for _, a := range t.Areas {
			if !slices.Contains(m.Areas, a) {
				m.Areas = append(m.Areas, a)
			}
		}
	}
	return m
}

// Run runs one mutant: the lab's synchronizer stopped, its keys tree and staging emptied, the
// mutant started, the suite's areas run.
func Run(ctx context.Context, c Config, m Mutant) Result {
	start := time.Now()
	res := Result{Mutant: m}
	res.Failures, res.Err = run(ctx, c, m)
	res.Duration = time.Since(start)
	return res
}

func run(ctx context.Context, c Config, m Mutant) ([]Failure, error) {
	if err := c.up(ctx, nodelab.SynchronizerNone); err != nil {
		return nil, err
	}
	if err := c.wipe(); err != nil {
		return nil, err
	}
	if err := c.up(ctx, CommandLine(c.MutantBin, m.Name)); err != nil {
		return nil, err
	}
	names := make([]string, len(m.Areas))
	for i, a := range m.Areas {
		names[i] = regexp.QuoteMeta(string(a))
	}
	args := append(slices.Clone(c.GoTest), "-count=1", "-json", "./suites",
		"-run", "^TestConformance$/^("+strings.Join(names, "|")+")$",
		"-args", "--lab-env", c.LabEnv, "--sync-timeout", c.SyncTimeout.String())
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = c.Root
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	runErr := cmd.Run()
	cases, err := report.FromGoTestJSON(&out)
	if err != nil {
		return nil, err
	}
	var fails []Failure
	passed := 0
	for _, cs := range cases {
		switch cs.Status {
		case report.Failed:
			fails = append(fails, failure(cs))
		case report.Passed:
			passed++
		}
	}
	if runErr != nil && len(fails) == 0 {
		return nil, fmt.Errorf("the suite failed without a failed check: %w: %s", runErr, lab.LastLines(errOut.Bytes(), 10))
	}
	if len(fails) > 0 && passed == 0 && fails[0].Feature == "" {
		// The package failed before any feature ran (no lab, build error).
		return nil, fmt.Errorf("the suite did not run: %s", fails[0].Message)
	}
	return fails, nil
}

// up runs `keysync lab up` with --synchronizer s.
func (c Config) up(ctx context.Context, s string) error {
	args := append(slices.Clone(c.Up), "--synchronizer", s)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = c.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("failed to bring the node lab up with --synchronizer %q: %w: %s", s, err, lab.LastLines(out, 15))
	}
	return nil
}

// wipe empties the lab's synced keys directory and the synchronizer's staging directory, so
// that no mutant inherits another's leftovers.
func (c Config) wipe() error {
	data, err := os.ReadFile(c.LabEnv)
	if err != nil {
		return fmt.Errorf("failed to read the lab env file: %w", err)
	}
	env, err := lab.ParseEnv(data)
	if err != nil {
		return fmt.Errorf("failed to parse the lab env file: %w", err)
	}
	work := env.Extra["NODE_LAB_WORK_DIR"]
	if env.Lab != lab.KindNode || work == "" || env.KeysRoot == "" || env.SyncSubdir == "" {
		return errors.New("the lab env file does not describe a node lab: the mutants run on the node lab only")
	}
	for _, dir := range []string{filepath.Join(env.KeysRoot, env.SyncSubdir), nodelab.Layout{Dir: work}.StagingDir()} {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("failed to list %s: %w", dir, err)
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("failed to empty %s: %w", dir, err)
			}
		}
	}
	return nil
}

var goFileLine = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: (.*)$`)

// failure turns a failed case (a check: Suite the feature, Name the assessment; else a test
// named "area/feature/step", underscores for spaces) into a Failure
// with the first message the test logged.
func failure(cs report.Case) Failure {
	f := Failure{}
	if cs.Suite != "" && !strings.Contains(cs.Suite, ".") {
		// A conformance check (its check marker): the feature and the assessment by name.
		f.Feature, f.Step = cs.Suite, cs.Name
	} else {
		parts := strings.SplitN(cs.Name, "/", 3)
		if len(parts) >= 2 {
			f.Feature = strings.ReplaceAll(parts[1], "_", " ")
		}
		if len(parts) == 3 {
			f.Step = strings.ReplaceAll(parts[2], "_", " ")
		}
	}
	for _, line := range strings.Split(cs.Message, "\n") {
		if m := goFileLine.FindStringSubmatch(line); m != nil {
			f.Message = strings.TrimSpace(m[1])
			break
		}
	}
	if f.Message == "" {
		f.Message = firstLine(cs.Message)
	}
	return f
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "===") && !strings.HasPrefix(l, "---") {
			return l
		}
	}
	return ""
}

// Areas lists the areas of conformance.Areas, for flag help.
func Areas() []conformance.Area { return conformance.Areas }

// Restore puts the reference synchronizer back (Up without --synchronizer), after emptying the
// keys tree of the last mutant's leftovers.
func Restore(ctx context.Context, c Config) error {
	if err := c.up(ctx, nodelab.SynchronizerNone); err != nil {
		return err
	}
	if err := c.wipe(); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, c.Up[0], c.Up[1:]...)
	cmd.Dir = c.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to bring the node lab up with the reference: %w: %s", err, lab.LastLines(out, 15))
	}
	return nil
}
