package conformance

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/keysync-dev/keysync/suites/conformance/report"
)

// RunOptions select features for Run, with e2e-framework's flag semantics: a feature runs if
// it has every Labels key=value (when Labels is set), none of SkipLabels, its name matches
// Feature (when set) and not SkipFeatures (when set).
type RunOptions struct {
	Labels       map[string][]string
	SkipLabels   map[string][]string
	Feature      *regexp.Regexp
	SkipFeatures *regexp.Regexp
	// Progress receives one line per step ("--- PASS: feature/assessment (1.2s)").
	Progress io.Writer
}

// Run executes features outside `go test` (for `keysync conformance`) with the same bodies,
// one at a time, and returns one report case per step. A fatal setup skips the feature's
// assessments; a stopped required assessment skips the ones that depend on it (check.go);
// cleanups run in every case. Features the options leave out are not checks of this run: no
// case, only their names in notSelected.
func Run(ctx context.Context, c *Context, fs []Feature, o RunOptions) (cases []report.Case, notSelected []string) {
	emit := func(rc report.Case) {
		cases = append(cases, rc)
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "--- %s: %s/%s (%.1fs)\n", strings.ToUpper(string(rc.Status)), rc.Suite, rc.Name, rc.Duration.Seconds())
			msg := strings.TrimSpace(rc.Message)
			if rc.Status == report.Warned {
				msg = warnLine(msg)
			}
			if rc.Status != report.Passed && msg != "" {
				fmt.Fprintf(o.Progress, "    %s\n", strings.ReplaceAll(msg, "\n", "\n    "))
			}
		}
	}
	for _, f := range fs {
		if reason, ok := selected(f, o); !ok {
			notSelected = append(notSelected, f.Name)
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "--- NOT SELECTED: %s (%s)\n", f.Name, reason)
			}
			continue
		}
		runFeature(ctx, c, f, emit)
	}
	return cases, notSelected
}

func selected(f Feature, o RunOptions) (string, bool) {
	for k, vs := range o.Labels {
		if v := f.Label(k); v == "" || !contains(vs, v) {
			return fmt.Sprintf("labels %s=%v not matched (feature has %s=%q)", k, vs, k, v), false
		}
	}
	for k, vs := range o.SkipLabels {
		if v := f.Label(k); v != "" && contains(vs, v) {
			return fmt.Sprintf("label %s=%s is skipped", k, v), false
		}
	}
	if o.Feature != nil && !o.Feature.MatchString(f.Name) {
		return "feature name does not match --feature", false
	}
	if o.SkipFeatures != nil && o.SkipFeatures.MatchString(f.Name) {
		return "feature name matches --skip-features", false
	}
	return "", true
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

func runFeature(ctx context.Context, c *Context, f Feature, emit func(report.Case)) {
	ft := newRunT(f.Name)
	area := string(f.Area)
	defer func() {
		failedBefore := ft.Failed()
		ft.resetOutput()
		ft.runCleanups()
		if !failedBefore && ft.Failed() { // a cleanup failed
			emit(report.Case{Suite: f.Name, Name: "cleanup", Area: area, Status: report.Failed, Message: ft.output()})
		}
	}()
	if f.Setup != nil {
		start := time.Now()
		ft.do(func() { f.Setup(ctx, ft, c) })
		rc := report.Case{Suite: f.Name, Name: "setup", Area: area, Duration: time.Since(start), Status: ft.status(), Message: ft.output()}
		ft.resetOutput()
		// Reports count checks: a setup is a case only when it failed; a skipped one (the lab
		// lacks a capability) skips every check with its reason.
		if rc.Status != report.Passed {
			reason := "skipped: setup did not pass"
			if rc.Status == report.Failed {
				rc.Diagnostics = c.diagnose(ctx)
				emit(rc)
			} else if m := strings.TrimSpace(rc.Message); m != "" {
				reason = m
			}
			for _, s := range f.Assess {
				emit(report.Case{Suite: f.Name, Name: s.Name, Area: area, Profile: string(s.profileOf()), Status: report.Skipped,
					Message: reason})
			}
			return
		}
	}
	fr := &featureRun{f: f}
	for _, s := range f.Assess {
		res := c.runStep(ctx, fr, s)
		emit(report.Case{Suite: f.Name, Name: s.Name, Area: area, Profile: string(s.profileOf()), Duration: res.duration,
			Status: res.status, Message: res.message, Diagnostics: res.diagnostics})
	}
}

// runT implements T outside `go test`: FailNow and Skip end the step's goroutine.
type runT struct {
	name          string
	mu            sync.Mutex
	failed        bool
	skipped       bool
	stoppedByFail bool
	out           strings.Builder
	cleanups      []func()
}

var _ T = (*runT)(nil)

func newRunT(name string) *runT { return &runT{name: name} }

// do runs fn on its own goroutine so that FailNow/SkipNow can end it with runtime.Goexit, and
// turns a panic into a failure.
func (t *runT) do(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("panic: %v", r)
			}
		}()
		fn()
	}()
	<-done
}

func (t *runT) runCleanups() {
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		fn := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		t.do(fn)
	}
}

func (t *runT) status() report.Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.failed:
		return report.Failed
	case t.skipped:
		return report.Skipped
	}
	return report.Passed
}

func (t *runT) output() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.String()
}

func (t *runT) resetOutput() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.out.Reset()
}

func (t *runT) Helper()      {}
func (t *runT) Name() string { return t.name }
func (t *runT) Logf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(&t.out, format+"\n", args...)
}
func (t *runT) Errorf(format string, args ...any) {
	t.Logf(format, args...)
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}
func (t *runT) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	t.FailNow()
}
func (t *runT) Skipf(format string, args ...any) {
	t.Logf(format, args...)
	t.mu.Lock()
	t.skipped = true
	t.mu.Unlock()
	runtime.Goexit()
}
func (t *runT) FailNow() {
	t.mu.Lock()
	t.failed, t.stoppedByFail = true, true
	t.mu.Unlock()
	runtime.Goexit()
}
func (t *runT) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}
func (t *runT) Cleanup(fn func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, fn)
}
