package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sample is a run with a pass, a failure with diagnostics, a warning and a skip, with text
// that must be escaped.
func sample() []Case {
	return []Case{
		{Suite: "a key Secret makes its encrypted image pull", Name: "the key file appears", Area: "plain", Profile: ProfileRequired, Status: Passed, Duration: 2 * time.Second},
		{Suite: "a key Secret makes its encrypted image pull", Name: "the encrypted fixture pulls", Area: "plain", Profile: ProfileRequired, Status: Failed,
			Message: "node n: pulling failed: <script>alert(1)</script> & more\nsecond line", Diagnostics: "syncer log:\n<b>oops</b>"},
		{Suite: "a key Secret makes its encrypted image pull", Name: "a KeySynced Event is recorded", Area: "plain", Profile: ProfileRecommended, Status: Warned,
			Message: "no Event with reason KeySynced on Secret \"ks-1-key-a\""},
		{Suite: "a kp-key Secret is unwrapped", Name: "feature", Area: "kp", Status: Skipped, Message: "skipped: lab lacks capability mockkp"},
	}
}

func TestSummaries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cases           []Case
		summary, byProf string
	}{
		{sample(), "1 passed, 1 failed, 1 skipped, 1 warned",
			"required: 1 passed, 1 failed, 1 skipped; recommended: 0 passed, 1 warned, 0 failed, 0 skipped"},
		{nil, "0 passed, 0 failed, 0 skipped", "required: 0 passed, 0 failed, 0 skipped; recommended: 0 passed, 0 warned, 0 failed, 0 skipped"},
		{[]Case{{Profile: ProfileRecommended, Status: Failed}, {Status: Passed}}, "1 passed, 1 failed, 0 skipped",
			"required: 1 passed, 0 failed, 0 skipped; recommended: 0 passed, 0 warned, 1 failed, 0 skipped"},
	}
	for i, tc := range tests {
		if got := Summary(tc.cases); got != tc.summary {
			t.Errorf("%d: Summary = %q, want %q", i, got, tc.summary)
		}
		if got := ProfileSummary(tc.cases); got != tc.byProf {
			t.Errorf("%d: ProfileSummary = %q, want %q", i, got, tc.byProf)
		}
	}
	// The CI parser's pattern still matches.
	if !regexp.MustCompile(`^\d+ passed, \d+ failed`).MatchString(Summary(sample())) {
		t.Error("summary no longer starts with N passed, N failed")
	}
}

func TestWriteJUnitProfiles(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, Meta{Title: "t", Synchronizer: "mine 1.0", Profile: ProfileRequired}, sample()); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	if doc.Tests != 4 || doc.Failures != 1 || doc.Skipped != 1 {
		t.Fatalf("totals %+v", doc)
	}
	prop := func(p *junitProperties, name string) string {
		if p == nil {
			return ""
		}
		for _, it := range p.Items {
			if it.Name == name {
				return it.Value
			}
		}
		return ""
	}
	if got := prop(doc.Properties, "synchronizer"); got != "mine 1.0" {
		t.Errorf("synchronizer property %q", got)
	}
	if got := prop(doc.Properties, "recommended"); got != "0 passed, 1 warned, 0 failed, 0 skipped" {
		t.Errorf("recommended property %q", got)
	}
	cs := doc.Suites[0].Cases
	if cs[1].Failure == nil || !strings.Contains(cs[1].SystemOut, "<b>oops</b>") {
		t.Errorf("failure without diagnostics in system-out: %+v", cs[1])
	}
	if cs[2].Failure != nil || prop(cs[2].Properties, "warning") == "" || !strings.HasPrefix(cs[2].SystemOut, WarnPrefix) ||
		prop(cs[2].Properties, "profile") != ProfileRecommended {
		t.Errorf("warning not marked: %+v", cs[2])
	}
	if prop(doc.Suites[1].Cases[0].Properties, "profile") != ProfileRequired {
		t.Error("a case without a profile must count as required")
	}
}

func marker(area, feature, assess, profile string) string {
	b, _ := json.Marshal(CheckInfo{Area: area, Feature: feature, Assessment: assess, Profile: profile,
		RunProfile: ProfileRequired, Synchronizer: "ref (x)", Lab: "node"})
	return CheckMarker + string(b)
}

func TestParseGoTestJSONChecks(t *testing.T) {
	t.Parallel()
	var in strings.Builder
	ev := func(action, test, out string, elapsed float64) {
		b, _ := json.Marshal(map[string]any{"Action": action, "Package": "k/suites", "Test": test, "Output": out, "Elapsed": elapsed})
		in.Write(append(b, '\n'))
	}
	const feat = "TestConformance/plain/a_key_Secret"
	ev("run", "TestConformance", "", 0)
	ev("run", feat, "", 0)
	ev("run", feat+"/file", "", 0)
	ev("output", feat+"/file", "=== RUN   "+feat+"/file\n", 0)
	ev("output", feat+"/file", "    e2e.go:10: "+marker("plain", "a key Secret", "the file appears", ProfileRequired)+"\n", 0)
	ev("output", feat+"/file", "    e2e.go:11: key file did not appear\n", 0)
	ev("output", feat+"/file", "    e2e.go:12: "+DiagnosticsMarker+"\n        syncer log: boom\n", 0)
	ev("fail", feat+"/file", "", 1.5)
	ev("run", feat+"/event", "", 0)
	ev("output", feat+"/event", "    e2e.go:10: "+marker("plain", "a key Secret", "KeySynced Event", ProfileRecommended)+"\n", 0)
	ev("output", feat+"/event", "    e2e.go:11: "+WarnPrefix+"no KeySynced Event\n        within 90s\n", 0)
	ev("pass", feat+"/event", "", 0.5)
	ev("fail", feat, "", 2)
	ev("run", "TestConformance/kp", "", 0)
	ev("run", "TestConformance/kp/a_kp-key", "", 0)
	ev("output", "TestConformance/kp/a_kp-key", "    env.go:1: skipping: lab lacks capability mockkp\n", 0)
	ev("skip", "TestConformance/kp/a_kp-key", "", 0)
	ev("output", "TestConformance/kp", "    e2e.go:90: test left Secrets behind (now deleted): [x]\n", 0)
	ev("fail", "TestConformance/kp", "", 0)
	ev("fail", "TestConformance", "", 2)
	setup, _ := json.Marshal(CheckInfo{Area: "addon", Feature: "the addon's resources", Assessment: SetupStep,
		Checks: []CheckRef{{"objects", ProfileRequired}, {"Role", ProfileRecommended}}})
	ev("run", "TestConformance/addon/the_addon's_resources", "", 0)
	ev("output", "TestConformance/addon/the_addon's_resources", "    e2e.go:1: "+CheckMarker+string(setup)+"\n", 0)
	ev("output", "TestConformance/addon/the_addon's_resources", "    e2e.go:2: needs a lab with capability cluster\n", 0)
	ev("skip", "TestConformance/addon/the_addon's_resources", "", 0)
	// Left out by the run's selection flags (e2e-framework's own skip messages): no checks.
	ev("run", "TestConformance/rotation/rotation_replaces", "", 0)
	ev("output", "TestConformance/rotation/rotation_replaces", `    env.go:231: Skipping feature "rotation replaces": unmatched labels "[area=rotation]"`+"\n", 0)
	ev("skip", "TestConformance/rotation/rotation_replaces", "", 0)
	ev("run", "TestConformance/hygiene/no_temp_files", "", 0)
	ev("output", "TestConformance/hygiene/no_temp_files", `    env.go:231: Skipping feature "no temp files": matched label provided in --skip-lables "area=hygiene"`+"\n", 0)
	ev("skip", "TestConformance/hygiene/no_temp_files", "", 0)
	ev("run", "TestConformance/plain/by_name", "", 0)
	ev("output", "TestConformance/plain/by_name", `    env.go:231: Skipping feature "by name": name not matched`+"\n", 0)
	ev("skip", "TestConformance/plain/by_name", "", 0)
	ev("run", "TestConformance/plain/skipped_by_name", "", 0)
	ev("output", "TestConformance/plain/skipped_by_name", `    env.go:231: Skipping feature: "skipped by name": name matched`+"\n", 0)
	ev("skip", "TestConformance/plain/skipped_by_name", "", 0)
	ev("run", "TestConformance/plain/a_feature/one_check", "", 0)
	ev("output", "TestConformance/plain/a_feature/one_check", `    env.go:518: Skipping assessment "one check": name not matched`+"\n", 0)
	ev("skip", "TestConformance/plain/a_feature/one_check", "", 0)
	ev("run", "TestHelperUnit", "", 0)
	ev("pass", "TestHelperUnit", "", 0)
	ev("fail", "", "", 3)

	res, err := ParseGoTestJSON(strings.NewReader(in.String()), GoTestOptions{Top: "TestConformance"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.NotSelected, "|"); got != "rotation replaces|no temp files|by name|skipped by name" {
		t.Errorf("not selected %q, want the four features the selection left out", got)
	}
	if got := strings.Join(res.NotSelectedChecks, "|"); got != "a feature / one check" {
		t.Errorf("checks not selected %q, want the assessment --assess left out", got)
	}
	m := Meta{NotSelected: res.NotSelected, NotSelectedChecks: res.NotSelectedChecks}
	if got, want := m.NotSelectedLine(), "not selected: 4 feature(s) and 1 check(s) left out by the run's selection flags, in no count"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	var junit, html strings.Builder
	if err := WriteJUnit(&junit, m, res.Cases); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&html, m, res.Cases, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(junit.String(), `<property name="not-selected" value="5">`) {
		t.Errorf("JUnit lacks the not-selected count: %s", junit.String())
	}
	for _, name := range []string{"<li>rotation replaces</li>", "<li>skipped by name</li>", "<li>a feature / one check</li>"} {
		if !strings.Contains(html.String(), name) {
			t.Errorf("HTML report does not list %s", name)
		}
	}
	if (Meta{}).NotSelectedLine() != "" {
		t.Errorf("a run without selection has a not-selected line")
	}
	if res.Ignored != 1 {
		t.Errorf("ignored %d non-conformance tests, want 1 (the unit test)", res.Ignored)
	}
	if res.Meta.Profile != ProfileRequired || res.Meta.Synchronizer != "ref (x)" {
		t.Errorf("meta %+v", res.Meta)
	}
	var got []string
	for _, c := range res.Cases {
		got = append(got, fmt.Sprintf("%s|%s|%s|%s|%s", c.Area, c.Suite, c.Name, c.Profile, c.Status))
	}
	want := []string{
		"plain|a key Secret|the file appears|required|fail",
		"plain|a key Secret|KeySynced Event|recommended|warn",
		"kp|k/suites.TestConformance/kp|after its checks||fail",
		"kp|a kp-key|feature||skip",
		"addon|the addon's resources|objects|required|skip",
		"addon|the addon's resources|Role|recommended|skip",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("cases:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c := res.Cases[0]; c.Message != "key file did not appear" || c.Diagnostics != "syncer log: boom" {
		t.Errorf("message %q diagnostics %q", c.Message, c.Diagnostics)
	}
	if c := res.Cases[1]; c.Message != "no KeySynced Event\n    within 90s" {
		t.Errorf("warning reason %q", c.Message)
	}
	if c := res.Cases[3]; !strings.Contains(c.Message, "lacks capability mockkp") {
		t.Errorf("skip reason lost: %q", c.Message)
	}
	if c := res.Cases[5]; c.Message != "needs a lab with capability cluster" {
		t.Errorf("skipped setup's reason not carried to its checks: %q", c.Message)
	}
	if c := res.Cases[2]; !strings.Contains(c.Message, "left Secrets behind") {
		t.Errorf("parent failure lost: %q", c.Message)
	}
}

func TestWriteHTML(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	m := Meta{Title: "keysync conformance", Synchronizer: `mine <v2> "beta"`, Lab: "node", Profile: ProfileRequired}
	if err := WriteHTML(&buf, m, sample(), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, bad := range []string{"<script>alert(1)</script>", "<b>oops</b>", `mine <v2>`, "<script", "http://", "https://"} {
		if strings.Contains(out, bad) {
			t.Errorf("HTML holds %q unescaped (or an outside resource)", bad)
		}
	}
	for _, want := range []string{
		"<!DOCTYPE html>", `<dd id="synchronizer">mine &lt;v2&gt; &#34;beta&#34;</dd>`,
		"&lt;script&gt;alert(1)&lt;/script&gt; &amp; more", "&lt;b&gt;oops&lt;/b&gt;",
		`<section class="area" id="area-plain">`, `<section class="area" id="area-kp">`,
		`<tr class="check check-fail">`, `<tr class="check check-warn">`, `<tr class="check check-skip">`, `<tr class="check check-pass">`,
		`<span class="v skip">SKIP</span> a kp-key Secret is unwrapped`, `<span class="v fail">FAIL</span> a key Secret`,
		"required: 1 passed, 1 failed, 1 skipped; recommended: 0 passed, 1 warned, 0 failed, 0 skipped",
		"1 passed, 1 failed, 1 skipped, 1 warned", "2026-01-02T03:04:05Z", "</html>",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	// Well-formed enough for an XML parser in non-strict mode: every tag closes.
	d := xml.NewDecoder(strings.NewReader(strings.Replace(out, "<!DOCTYPE html>", "", 1)))
	d.Strict, d.AutoClose, d.Entity = false, xml.HTMLAutoClose, xml.HTMLEntity
	for {
		if _, err := d.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("HTML does not parse: %v", err)
			}
			break
		}
	}
	var empty bytes.Buffer
	if err := WriteHTML(&empty, Meta{Title: "x"}, nil, time.Time{}); err != nil || !strings.Contains(empty.String(), ">unknown</dd>") {
		t.Errorf("no synchronizer must print unknown: %v", err)
	}
}

func TestRejudge(t *testing.T) {
	t.Parallel()
	cases := []Case{
		{Name: "req fails", Profile: ProfileRequired, Status: Failed},
		{Name: "rec fails", Profile: ProfileRecommended, Status: Failed},
		{Name: "rec passes", Profile: ProfileRecommended, Status: Passed},
		{Name: "rec skipped", Profile: ProfileRecommended, Status: Skipped},
		{Name: "rec warned", Profile: ProfileRecommended, Status: Warned},
	}
	tests := []struct {
		profile string
		want    []Status
		wantErr bool
	}{
		{profile: ProfileRequired, want: []Status{Failed, Warned, Passed, Skipped, Warned}},
		{profile: ProfileRecommended, want: []Status{Failed, Failed, Passed, Skipped, Failed}},
		{profile: "lenient", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			t.Parallel()
			got, err := Rejudge(cases, tt.profile)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range got {
				if c.Status != tt.want[i] {
					t.Errorf("%s: %s, want %s", c.Name, c.Status, tt.want[i])
				}
			}
			if cases[1].Status != Failed {
				t.Error("Rejudge changed its input")
			}
		})
	}
}
