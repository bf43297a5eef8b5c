// Package report turns conformance results into JUnit XML, a static HTML page and summary
// lines. Results come from the CLI runner (conformance.Run) or from `go test -json` output
// (FromGoTestJSON), since e2e-framework has no JUnit writer of its own.
//
// A result is one check: a feature's assessment run against the lab, in one profile
// (required or recommended). Under the required profile a failed recommended check is a
// warning (Warned): reported with its reason, counted apart, never a failure.
package report

import (
	"fmt"
	"strings"
	"time"
)

// Status of one case.
type Status string

// The statuses.
const (
	Passed  Status = "pass"
	Failed  Status = "fail"
	Skipped Status = "skip"
	// Warned is a recommended check that failed in a run judged by the required profile.
	Warned Status = "warn"
)

// The profiles a check belongs to (conformance.Profile has the same values).
const (
	ProfileRequired    = "required"
	ProfileRecommended = "recommended"
)

// Markers the go test path writes into a step's output and FromGoTestJSON reads back.
const (
	// CheckMarker starts the line that describes a check as JSON (CheckInfo).
	CheckMarker = "keysync-check: "
	// WarnPrefix starts the reason of a warning ("WARN recommended: <reason>").
	WarnPrefix = "WARN recommended: "
	// DiagnosticsMarker starts the diagnostics block collected after a failure; what follows
	// it in the step's output is Case.Diagnostics.
	DiagnosticsMarker = "=== keysync diagnostics ==="
)

// CheckInfo describes a check in the go test path's marker line.
type CheckInfo struct {
	Area       string `json:"area"`
	Feature    string `json:"feature"`
	Assessment string `json:"assessment"`
	Profile    string `json:"profile,omitempty"`
	// RunProfile is the profile the run judged by (required or recommended).
	RunProfile string `json:"run_profile,omitempty"`
	// Synchronizer is what was judged (the lab env file's SYNCHRONIZER).
	Synchronizer string `json:"synchronizer,omitempty"`
	Lab          string `json:"lab,omitempty"`
	// Checks lists the feature's checks in the setup's marker (Assessment SetupStep).
	Checks []CheckRef `json:"checks,omitempty"`
}

// CheckRef names one check of a feature.
type CheckRef struct {
	Name    string `json:"name"`
	Profile string `json:"profile"`
}

// SetupStep is the Assessment of a feature setup's marker.
const SetupStep = "setup"

// Case is one test case: a feature's step (an assessment, or its setup or cleanup), or a go
// test (sub)test that is not one.
type Case struct {
	Suite    string // feature (or top-level test) name
	Name     string // step (or subtest path)
	Status   Status
	Duration time.Duration
	Message  string // failure/skip/warning message or output
	// Area is the feature's area ("" when unknown).
	Area string
	// Profile is the check's profile; "" for a feature's setup and cleanup and for whole
	// skipped features, which count as required (they stand for the feature's core verdict).
	Profile string
	// Diagnostics is what was collected on the lab after a failure or warning: synchronizer
	// logs, Events, the keys tree's audit (never key bytes).
	Diagnostics string
}

// Meta describes a run for the reports.
type Meta struct {
	// Title names the run ("keysync conformance").
	Title string
	// Synchronizer is what was judged; "" prints as "unknown".
	Synchronizer string
	// Lab is the lab's kind (node, kind, cluster).
	Lab string
	// Profile is the profile the run judged by.
	Profile string
	// Started is when the run started (zero: not printed).
	Started time.Time
	// NotSelected names the features the run's selection flags (--labels, --skip-labels,
	// --feature, --skip-features) left out, and NotSelectedChecks the single checks they left
	// out of features that ran ("feature / assessment"; --assess, --skip-assessment): not
	// checks of this run, in no count.
	NotSelected       []string
	NotSelectedChecks []string
}

// NotSelectedLine says how many features and checks the selection left out ("" when none).
func (m Meta) NotSelectedLine() string {
	if len(m.NotSelected) == 0 && len(m.NotSelectedChecks) == 0 {
		return ""
	}
	what := fmt.Sprintf("%d feature(s)", len(m.NotSelected))
	if len(m.NotSelectedChecks) > 0 {
		what += fmt.Sprintf(" and %d check(s)", len(m.NotSelectedChecks))
	}
	return "not selected: " + what + " left out by the run's selection flags, in no count"
}

// SynchronizerOrUnknown returns m.Synchronizer, or "unknown".
func (m Meta) SynchronizerOrUnknown() string {
	if strings.TrimSpace(m.Synchronizer) == "" {
		return "unknown"
	}
	return m.Synchronizer
}

// Tally counts cases by status.
type Tally struct {
	Passed, Failed, Skipped, Warned int
}

func (t *Tally) add(s Status) {
	switch s {
	case Passed:
		t.Passed++
	case Failed:
		t.Failed++
	case Warned:
		t.Warned++
	default:
		t.Skipped++
	}
}

// Total is the number of cases counted.
func (t Tally) Total() int { return t.Passed + t.Failed + t.Skipped + t.Warned }

// Count tallies cases.
func Count(cases []Case) Tally {
	var t Tally
	for _, c := range cases {
		t.add(c.Status)
	}
	return t
}

// Counts returns how many cases passed, failed and were skipped (warnings are in none of
// them; see Count).
func Counts(cases []Case) (passed, failed, skipped int) {
	t := Count(cases)
	return t.Passed, t.Failed, t.Skipped
}

// Summary is the line CI greps: "N passed, N failed, N skipped", with ", N warned" appended
// when a recommended check warned.
func Summary(cases []Case) string {
	t := Count(cases)
	line := fmt.Sprintf("%d passed, %d failed, %d skipped", t.Passed, t.Failed, t.Skipped)
	if t.Warned > 0 {
		line += fmt.Sprintf(", %d warned", t.Warned)
	}
	return line
}

// ProfileOf returns the profile a case counts under (required when it has none).
func ProfileOf(c Case) string {
	if c.Profile == "" {
		return ProfileRequired
	}
	return c.Profile
}

// ByProfile tallies cases per profile.
func ByProfile(cases []Case) map[string]Tally {
	out := map[string]Tally{ProfileRequired: {}, ProfileRecommended: {}}
	for _, c := range cases {
		p := ProfileOf(c)
		t := out[p]
		t.add(c.Status)
		out[p] = t
	}
	return out
}

// ProfileSummary is the per-profile line printed before Summary:
// "required: 30 passed, 0 failed, 1 skipped; recommended: 10 passed, 2 warned, 0 failed, 0 skipped".
func ProfileSummary(cases []Case) string {
	by := ByProfile(cases)
	var parts []string
	for _, p := range []string{ProfileRequired, ProfileRecommended} {
		t := by[p]
		s := fmt.Sprintf("%s: %d passed", p, t.Passed)
		if t.Warned > 0 || p == ProfileRecommended {
			s += fmt.Sprintf(", %d warned", t.Warned)
		}
		s += fmt.Sprintf(", %d failed, %d skipped", t.Failed, t.Skipped)
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Rejudge returns cases as a run under profile would have reported them. The two profiles run
// the same checks and a failed recommended check stops nothing under either, so a run judged
// under one holds every verdict of the other: under "required" a failed recommended check is
// a warning, under "recommended" a warning is a failure again. Any other profile is an error.
func Rejudge(cases []Case, profile string) ([]Case, error) {
	from, to := Failed, Warned
	switch profile {
	case ProfileRequired:
	case ProfileRecommended:
		from, to = Warned, Failed
	default:
		return nil, fmt.Errorf("unknown profile %q (want %s or %s)", profile, ProfileRequired, ProfileRecommended)
	}
	out := make([]Case, len(cases))
	for i, c := range cases {
		if c.Status == from && c.Profile == ProfileRecommended {
			c.Status = to
		}
		out[i] = c
	}
	return out, nil
}
