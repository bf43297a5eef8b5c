package mutants

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/suites/conformance"
	"github.com/keysync-dev/keysync/suites/conformance/report"
)

// TestTable: every mutant runs areas that exist, and every feature it expects to fail is in
// one of them.
func TestTable(t *testing.T) {
	area := map[string]conformance.Area{}
	for _, f := range conformance.Features() {
		area[f.Name] = f.Area
	}
	seen := map[string]bool{}
	for _, m := range Table {
		if seen[m.Name] {
			t.Errorf("mutant %s is listed twice", m.Name)
		}
		seen[m.Name] = true
		if len(m.Areas) == 0 || len(m.Expect) == 0 || m.Defect == "" {
			t.Errorf("mutant %s needs areas, expected features and a defect", m.Name)
		}
		for _, e := range m.Expect {
			a, ok := area[e]
			if !ok {
				t.Errorf("mutant %s expects feature %q, which does not exist", m.Name, e)
			} else if !slices.Contains(m.Areas, a) {
				t.Errorf("mutant %s expects feature %q of area %s, which it does not run", m.Name, e, a)
			}
		}
	}
	if len(Table) < 12 {
		t.Errorf("%d mutants, want at least 12", len(Table))
	}
}

func TestFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   report.Case
		want Failure
	}{
		{name: "step", in: report.Case{Name: "plain/a_key_Secret_makes_its_encrypted_image_pull/the_key_file_appears",
			Message: "=== RUN   x\n    area_plain.go:60: node n: synced/f.pem has mode 0644, want 0600\n--- FAIL: x\n"},
			want: Failure{Feature: "a key Secret makes its encrypted image pull", Step: "the key file appears", Message: "node n: synced/f.pem has mode 0644, want 0600"}},
		{name: "setup", in: report.Case{Name: "kp/a_feature", Message: "    scope.go:62: Secret x: key file did not appear\n"},
			want: Failure{Feature: "a feature", Message: "Secret x: key file did not appear"}},
		{name: "check (marker)", in: report.Case{Suite: "a key Secret makes its encrypted image pull", Name: "setup",
			Message: "    scope.go:62: node n: synced/f.pem has mode 0644, want 0600\n"},
			want: Failure{Feature: "a key Secret makes its encrypted image pull", Step: "setup", Message: "node n: synced/f.pem has mode 0644, want 0600"}},
		{name: "no file:line", in: report.Case{Name: "plain", Message: "=== RUN x\npanic: boom\n"},
			want: Failure{Message: "panic: boom"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := failure(tc.in); got != tc.want {
				t.Fatalf("failure() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPrintTable(t *testing.T) {
	m := func(name string, expect ...string) Mutant {
		return Mutant{Name: name, Defect: "d " + name, Expect: expect}
	}
	results := []Result{
		{Mutant: m(Reference)},
		{Mutant: m("killed", "f1"), Failures: []Failure{{Feature: "f1", Step: "s", Message: "mode 0644 | want 0600"}}},
		{Mutant: m("unrelated", "f1"), Failures: []Failure{{Feature: "f2", Message: "x"}}},
		{Mutant: m("survivor", "f1")},
		{Mutant: m("broken", "f1"), Err: errors.New("lab up failed")},
	}
	var out bytes.Buffer
	killed, total := PrintTable(&out, results)
	if killed != 2 || total != 4 {
		t.Fatalf("PrintTable = %d/%d, want 2/4", killed, total)
	}
	s := out.String()
	for _, want := range []string{
		"| killed | d killed | f1 | f1 (s: mode 0644 \\| want 0600) | yes |",
		"| unrelated | d unrelated | f1 | f2 (setup: x) | yes (unexpected feature) |",
		"| survivor | d survivor | f1 | — | no |",
		"| broken | d broken | f1 | — | error: lab up failed |",
		"| reference | d reference | none | — | no |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
	if !strings.HasSuffix(s, "mutants: 2/4 killed\n") {
		t.Errorf("table does not end with the count line:\n%s", s)
	}
}

func TestCommandLine(t *testing.T) {
	ref, mut := CommandLine("/b/s", Reference), CommandLine("/b/s", "mode-0644")
	if strings.Contains(ref, "--mutant") || !strings.HasSuffix(mut, " --mutant mode-0644") {
		t.Fatalf("CommandLine: reference %q, mutant %q", ref, mut)
	}
	for _, ph := range []string{"{kubeconfig}", "{keys-dir}", "{staging-dir}", "{namespace}", "{node-name}"} {
		if !strings.Contains(ref, ph) {
			t.Errorf("command line lacks %s: %q", ph, ref)
		}
	}
}

func TestReferenceRow(t *testing.T) {
	r := ReferenceRow([]Mutant{{Areas: []conformance.Area{"plain", "kp"}}, {Areas: []conformance.Area{"kp", "rotation"}}})
	if !slices.Equal(r.Areas, []conformance.Area{"plain", "kp", "rotation"}) {
		t.Fatalf("ReferenceRow areas = %v", r.Areas)
	}
}
