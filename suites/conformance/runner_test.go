package conformance

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/suites/conformance/report"
)

func TestRun(t *testing.T) {
	t.Parallel()
	var order []string
	rec := func(s string) { order = append(order, s) }
	fs := []Feature{
		{Name: "ok", Area: AreaPlain,
			Setup: func(_ context.Context, t T, _ *Context) { rec("setup ok"); t.Cleanup(func() { rec("cleanup ok") }) },
			Assess: []Step{
				{Name: "a1", Fn: func(_ context.Context, t T, _ *Context) { rec("a1"); t.Cleanup(func() { rec("cleanup a1") }) }},
				{Name: "a2", Fn: func(_ context.Context, t T, _ *Context) { t.Skipf("lab cannot"); rec("after skip") }},
			}},
		{Name: "fatal assess", Area: AreaKP,
			Setup: func(_ context.Context, t T, _ *Context) { t.Cleanup(func() { rec("cleanup fatal") }) },
			Assess: []Step{
				{Name: "b1", Fn: func(_ context.Context, t T, _ *Context) { t.Fatalf("boom %d", 1); rec("after fatal") }},
				{Name: "b2", Fn: func(_ context.Context, _ T, _ *Context) { rec("b2") }},
			}},
		{Name: "fatal setup", Area: AreaRotation,
			Setup: func(_ context.Context, t T, _ *Context) {
				t.Cleanup(func() { rec("cleanup setup") })
				t.Fatalf("no lab")
			},
			Assess: []Step{{Name: "c1", Fn: func(_ context.Context, _ T, _ *Context) { rec("c1") }}}},
		{Name: "errorf and panic", Area: AreaHygiene, Assess: []Step{
			{Name: "d1", Fn: func(_ context.Context, t T, _ *Context) { t.Errorf("soft"); rec("after errorf") }},
			{Name: "d2", Fn: func(_ context.Context, _ T, _ *Context) { panic("bad") }},
		}},
		{Name: "filtered", Area: AreaBadInput, Assess: []Step{{Name: "e1", Fn: func(_ context.Context, _ T, _ *Context) { rec("e1") }}}},
		{Name: "cleanup fails", Area: AreaPlain,
			Setup:  func(_ context.Context, t T, _ *Context) { t.Cleanup(func() { t.Errorf("leak") }) },
			Assess: []Step{{Name: "f1", Fn: func(_ context.Context, _ T, _ *Context) {}}}},
	}
	var progress strings.Builder
	cases, notSelected := Run(context.Background(), &Context{}, fs, RunOptions{
		SkipLabels: map[string][]string{LabelArea: {"bad-input"}}, Progress: &progress})
	// A feature the options leave out is no check of the run: named, never counted.
	if len(notSelected) != 1 || notSelected[0] != "filtered" {
		t.Errorf("not selected %q, want [filtered]", notSelected)
	}
	if !strings.Contains(progress.String(), "--- NOT SELECTED: filtered (label area=bad-input is skipped)") {
		t.Errorf("progress does not name the feature left out: %s", progress.String())
	}
	got := map[string]report.Status{}
	for _, c := range cases {
		got[c.Suite+"/"+c.Name] = c.Status
	}
	want := map[string]report.Status{
		"ok/a1": report.Passed, "ok/a2": report.Skipped,
		"fatal assess/b1": report.Failed, "fatal assess/b2": report.Skipped,
		"fatal setup/setup": report.Failed, "fatal setup/c1": report.Skipped,
		"errorf and panic/d1": report.Failed, "errorf and panic/d2": report.Failed,
		"cleanup fails/f1": report.Passed, "cleanup fails/cleanup": report.Failed,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: status %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got cases %v, want %d", got, len(want))
	}
	wantOrder := "setup ok,a1,cleanup a1,cleanup ok,cleanup fatal,cleanup setup,after errorf"
	if g := strings.Join(order, ","); g != wantOrder {
		t.Errorf("order %s\nwant  %s", g, wantOrder)
	}
	if !strings.Contains(progress.String(), "--- FAIL: fatal assess/b1") || !strings.Contains(progress.String(), "boom 1") {
		t.Errorf("progress lacks the failure: %s", progress.String())
	}
	// Passing setups are not checks and are not counted.
	if p, f, s := report.Counts(cases); p != 2 || f != 5 || s != 3 {
		t.Errorf("counts %d/%d/%d", p, f, s)
	}
}

func TestSelected(t *testing.T) {
	t.Parallel()
	f := Feature{Name: "a kp-key Secret", Area: AreaKP}
	tests := []struct {
		name string
		o    RunOptions
		want bool
	}{
		{"no filters", RunOptions{}, true},
		{"label match", RunOptions{Labels: map[string][]string{"area": {"plain", "kp"}}}, true},
		{"label mismatch", RunOptions{Labels: map[string][]string{"area": {"plain"}}}, false},
		{"unknown label key", RunOptions{Labels: map[string][]string{"tier": {"smoke"}}}, false},
		{"skip label", RunOptions{SkipLabels: map[string][]string{"area": {"kp"}}}, false},
		{"feature regexp", RunOptions{Feature: regexp.MustCompile("kp-key")}, true},
		{"feature regexp mismatch", RunOptions{Feature: regexp.MustCompile("rotat")}, false},
		{"skip features", RunOptions{SkipFeatures: regexp.MustCompile("Secret")}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, ok := selected(f, tc.o); ok != tc.want {
				t.Fatalf("selected = %v, want %v", ok, tc.want)
			}
		})
	}
}

func TestFeaturesShape(t *testing.T) {
	t.Parallel()
	fs := Features()
	seen := map[Area]int{}
	names := map[string]bool{}
	for _, f := range fs {
		seen[f.Area]++
		if names[f.Name] {
			t.Errorf("duplicate feature name %q", f.Name)
		}
		names[f.Name] = true
		if f.Setup == nil || len(f.Assess) < 2 {
			t.Errorf("%s: want a setup and assessments", f.Name)
		}
		if last := f.Assess[len(f.Assess)-1]; !strings.HasPrefix(last.Name, "hygiene") {
			t.Errorf("%s: last assessment %q, want the hygiene check", f.Name, last.Name)
		}
	}
	for _, a := range Areas {
		if seen[a] == 0 {
			t.Errorf("no feature in area %s", a)
		}
	}
	if len(FeaturesIn(AreaPlain)) != seen[AreaPlain] {
		t.Error("FeaturesIn disagrees with Features")
	}
}
