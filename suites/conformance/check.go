package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/suites/conformance/report"
)

// A feature's checks run in order and each one reports, whatever happened before it, with two
// exceptions that both runners (Run and E2E) share:
//
//   - a failed setup skips the feature's assessments (nothing to assess);
//   - a required assessment that stops (t.Fatalf / FailNow) skips the assessments after it
//     that depend on its outcome: every assessment does, unless it is marked Independent
//     (the hygiene checks every feature ends with, "a plain image still pulls", "other keys
//     still pull", the addon's pod count...). A required assessment that only reports
//     (t.Errorf) stops nothing.
//
// A failed recommended assessment never stops anything, and under the required profile it is
// a warning. Every failed or warned check gets diagnostics (see diagnose).

// featureRun is one feature's run state.
type featureRun struct {
	f Feature
	// stoppedBy names the required assessment whose stop skips the dependent ones.
	stoppedBy string
}

// stepResult is one executed step.
type stepResult struct {
	status      report.Status
	message     string
	diagnostics string
	duration    time.Duration
}

// runStep runs one assessment of fr's feature in its own T (so FailNow and Skip end only the
// step) and judges it by its profile and the run's.
func (c *Context) runStep(ctx context.Context, fr *featureRun, s Step) stepResult {
	if fr.stoppedBy != "" && !s.Independent {
		return stepResult{status: report.Skipped,
			message: fmt.Sprintf("skipped: required assessment %q failed and this one depends on it", fr.stoppedBy)}
	}
	at := newRunT(fr.f.Name + "/" + s.Name)
	start := time.Now()
	at.do(func() { s.Fn(ctx, at, c) })
	at.runCleanups()
	res := stepResult{status: at.status(), message: at.output(), duration: time.Since(start)}
	if res.status != report.Failed {
		return res
	}
	switch {
	case s.profileOf() == ProfileRecommended && c.profile() == ProfileRequired:
		res.status = report.Warned
	case s.profileOf() == ProfileRequired && at.stoppedByFail:
		fr.stoppedBy = s.Name
	}
	res.diagnostics = c.diagnose(ctx)
	return res
}

// checkMarker is the line the go test path logs first in every step, read back by
// report.ParseGoTestJSON. The setup's marker lists the feature's checks, so that a skipped
// or failed setup is reported as its checks skipped (as Run does).
func (c *Context) checkMarker(f Feature, assessment string, p Profile) string {
	info := report.CheckInfo{Area: string(f.Area), Feature: f.Name, Assessment: assessment, Profile: string(p),
		RunProfile: string(c.profile()), Synchronizer: c.Lab.Synchronizer, Lab: c.Lab.Lab}
	if assessment == report.SetupStep {
		for _, s := range f.Assess {
			info.Checks = append(info.Checks, report.CheckRef{Name: s.Name, Profile: string(s.profileOf())})
		}
	}
	b, err := json.Marshal(info)
	if err != nil { // cannot happen: strings only
		return report.CheckMarker + "{}"
	}
	return report.CheckMarker + string(b)
}

// Meta describes the run for the reports.
func (c *Context) Meta(title string, started time.Time) report.Meta {
	return report.Meta{Title: title, Synchronizer: c.Lab.Synchronizer, Lab: c.Lab.Lab, Profile: string(c.profile()), Started: started}
}

// warnLine is how a warning reads in progress output and logs.
func warnLine(message string) string {
	return report.WarnPrefix + strings.TrimSpace(message)
}
