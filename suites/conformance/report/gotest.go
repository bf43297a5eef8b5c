package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// testEvent is one line of `go test -json` (cmd/test2json).
type testEvent struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// GoTestOptions tune ParseGoTestJSON.
type GoTestOptions struct {
	// Top keeps only tests under this top-level test name (e.g. "TestConformance"): the
	// conformance checks, never unit tests that happen to share the package. Package-level
	// failures (build errors, TestMain failing) are always kept. "" keeps everything.
	Top string
}

// GoTestResult is what ParseGoTestJSON found.
type GoTestResult struct {
	Cases []Case
	// Meta is read from the first check marker (profile, synchronizer, lab).
	Meta Meta
	// Ignored counts leaf tests left out by GoTestOptions.Top.
	Ignored int
	// NotSelected names the features e2e-framework's selection flags left out (--labels,
	// --skip-labels, --feature, --skip-features), NotSelectedChecks the assessments they
	// left out of features that ran (--assess, --skip-assessment) as "feature / assessment":
	// not checks of the run, so no case.
	NotSelected       []string
	NotSelectedChecks []string
}

// notSelectedRE matches e2e-framework's skip messages for features and assessments its
// selection flags leave out (pkg/env/env.go, v0.7.0), capturing the kind and the name.
var notSelectedRE = regexp.MustCompile(`Skipping (feature|assessment):? "([^"]*)": (?:unmatched labels|matched label provided in --skip-|name not matched|name matched)`)

// FromGoTestJSON converts `go test -json` output into cases (ParseGoTestJSON keeping every
// test).
func FromGoTestJSON(r io.Reader) ([]Case, error) {
	res, err := ParseGoTestJSON(r, GoTestOptions{})
	return res.Cases, err
}

// ParseGoTestJSON converts `go test -json` output into cases: one per leaf test (a test with
// no subtests). A leaf whose output holds a check marker (CheckMarker, written by the
// conformance suites) is named by its feature and assessment and carries area and profile; a
// passing one with a WarnPrefix line is Warned; the output after DiagnosticsMarker is its
// Diagnostics. Other leaves are grouped by top-level test as "package.TestName". A test that
// failed while all its subtests passed (an AfterEachTest check) becomes a failed case named
// after it. A package that failed without any failing test (a build error, or TestMain failing
// before the tests, such as "no lab") becomes one failed case named "package" carrying the
// package output. Non-JSON lines are ignored.
func ParseGoTestJSON(r io.Reader, o GoTestOptions) (GoTestResult, error) {
	type rec struct {
		pkg, test string
		action    string
		elapsed   float64
		out       strings.Builder
		order     int
	}
	tests := map[string]*rec{}
	pkgs := map[string]*rec{}
	hasChild := map[string]bool{}
	order := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var ev testEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			continue
		}
		var rc *rec
		if ev.Test == "" {
			rc = pkgs[ev.Package]
			if rc == nil {
				rc = &rec{pkg: ev.Package, order: order}
				order++
				pkgs[ev.Package] = rc
			}
		} else {
			key := ev.Package + "\x00" + ev.Test
			rc = tests[key]
			if rc == nil {
				rc = &rec{pkg: ev.Package, test: ev.Test, order: order}
				order++
				tests[key] = rc
				for p := ev.Test; strings.Contains(p, "/"); {
					p = p[:strings.LastIndexByte(p, '/')]
					hasChild[ev.Package+"\x00"+p] = true
				}
			}
		}
		switch ev.Action {
		case "output":
			rc.out.WriteString(ev.Output)
		case "pass", "fail", "skip":
			rc.action, rc.elapsed = ev.Action, ev.Elapsed
		}
	}
	if err := sc.Err(); err != nil {
		return GoTestResult{}, fmt.Errorf("failed to read go test output: %w", err)
	}
	var res GoTestResult
	keep := func(test string) bool {
		top, _, _ := strings.Cut(test, "/")
		return o.Top == "" || top == o.Top
	}
	var recs []*rec
	for _, rc := range tests {
		recs = append(recs, rc)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].order < recs[j].order })
	failedTests := map[string]bool{}
	failedBelow := map[string]bool{} // pkg\x00test → a descendant failed
	for _, rc := range recs {
		if rc.action == "fail" || rc.action == "" {
			failedTests[rc.pkg] = true
			for p := rc.test; strings.Contains(p, "/"); {
				p = p[:strings.LastIndexByte(p, '/')]
				failedBelow[rc.pkg+"\x00"+p] = true
			}
		}
	}
	metaSet := false
	for _, rc := range recs {
		key := rc.pkg + "\x00" + rc.test
		if !keep(rc.test) {
			if !hasChild[key] {
				res.Ignored++
			}
			continue
		}
		st := Status(rc.action)
		if rc.action == "" {
			st = Failed // started, never finished: the binary died or timed out
		}
		dur := time.Duration(rc.elapsed * float64(time.Second))
		if hasChild[key] {
			// A parent that failed on its own (after its subtests: AfterEachTest).
			if st == Failed && !failedBelow[key] {
				pc := Case{Suite: rc.pkg + "." + rc.test, Name: "after its checks", Status: Failed,
					Duration: dur, Message: cleanOutput(rc.out.String())}
				if parts := strings.Split(rc.test, "/"); len(parts) > 1 {
					pc.Area = parts[1]
				}
				res.Cases = append(res.Cases, pc)
			}
			continue
		}
		if st == Skipped && o.Top != "" {
			if m := notSelectedRE.FindStringSubmatch(rc.out.String()); m != nil {
				if m[1] == "feature" {
					res.NotSelected = append(res.NotSelected, m[2])
					continue
				}
				// An assessment: Top/<area>/<feature>/<assessment>, the feature's spaces
				// written as underscores by go test.
				feature := "?"
				if parts := strings.SplitN(rc.test, "/", 4); len(parts) == 4 {
					feature = strings.ReplaceAll(parts[2], "_", " ")
				}
				res.NotSelectedChecks = append(res.NotSelectedChecks, feature+" / "+m[2])
				continue
			}
		}
		c := leafCase(rc.pkg, rc.test, st, dur, rc.out.String(), o.Top != "")
		info, ok := checkInfo(rc.out.String())
		if ok && !metaSet {
			res.Meta = Meta{Profile: info.RunProfile, Synchronizer: info.Synchronizer, Lab: info.Lab}
			metaSet = true
		}
		if !ok || info.Assessment != SetupStep || st == Passed {
			res.Cases = append(res.Cases, c)
			continue
		}
		// A feature whose setup did not pass: its checks, skipped (after the setup's
		// failure, which is a case of its own).
		reason := "skipped: setup did not pass"
		if st == Failed {
			res.Cases = append(res.Cases, c)
		} else if c.Message != "" {
			reason = c.Message
		}
		for _, ch := range info.Checks {
			res.Cases = append(res.Cases, Case{Suite: c.Suite, Name: ch.Name, Area: c.Area, Profile: ch.Profile, Status: Skipped, Message: reason})
		}
	}
	var pkgList []*rec
	for _, rc := range pkgs {
		pkgList = append(pkgList, rc)
	}
	sort.Slice(pkgList, func(i, j int) bool { return pkgList[i].order < pkgList[j].order })
	for _, rc := range pkgList {
		if rc.action == "fail" && !failedTests[rc.pkg] {
			res.Cases = append(res.Cases, Case{Suite: rc.pkg, Name: "package", Status: Failed,
				Duration: time.Duration(rc.elapsed * float64(time.Second)), Message: rc.out.String()})
		}
	}
	return res, nil
}

// leafCase builds the case of one leaf test from its output; conformance says its path is
// Top/<area>/<feature>[/<assessment>].
func leafCase(pkg, test string, st Status, dur time.Duration, out string, conformance bool) Case {
	top, rest, _ := strings.Cut(test, "/")
	name := rest
	if name == "" {
		name = top
	}
	c := Case{Suite: pkg + "." + top, Name: name, Status: st, Duration: dur}
	if area, _, ok := strings.Cut(rest, "/"); ok {
		c.Area = area
	}
	body, diag, _ := strings.Cut(out, DiagnosticsMarker)
	c.Diagnostics = cleanOutput(diag)
	if info, ok := checkInfo(body); ok {
		c.Suite, c.Name, c.Area, c.Profile = info.Feature, info.Assessment, info.Area, info.Profile
	} else if parts := strings.SplitN(test, "/", 4); conformance && len(parts) >= 3 {
		// A feature e2e-framework skipped before its setup (--labels, --feature): named by
		// its test name (go test wrote its spaces as underscores).
		c.Suite, c.Name = strings.ReplaceAll(parts[2], "_", " "), "feature"
		if len(parts) == 4 {
			c.Name = parts[3]
		}
	}
	body = cleanOutput(body)
	if i := strings.Index(body, WarnPrefix); i >= 0 && st == Passed {
		c.Status = Warned
		body = body[i+len(WarnPrefix):]
	}
	c.Message = body
	return c
}

// checkInfo finds and decodes the check marker line in a test's output.
func checkInfo(out string) (CheckInfo, bool) {
	for _, line := range strings.Split(out, "\n") {
		if _, js, ok := strings.Cut(line, CheckMarker); ok {
			var info CheckInfo
			if json.Unmarshal([]byte(js), &info) == nil && info.Feature != "" {
				return info, true
			}
		}
	}
	return CheckInfo{}, false
}

// cleanOutput drops go test's own framing lines (=== RUN and the like) and the check marker,
// and removes t.Log's indentation.
func cleanOutput(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "=== RUN") || strings.HasPrefix(trimmed, "=== PAUSE") ||
			strings.HasPrefix(trimmed, "=== CONT") || strings.HasPrefix(trimmed, "=== NAME") ||
			strings.HasPrefix(trimmed, "--- PASS") || strings.HasPrefix(trimmed, "--- FAIL") ||
			strings.HasPrefix(trimmed, "--- SKIP") || strings.Contains(line, CheckMarker) {
			continue
		}
		keep = append(keep, logPrefix.ReplaceAllString(line, "$1"))
	}
	return strings.TrimSpace(dedent(strings.Join(keep, "\n")))
}

// logPrefix is t.Log's "file.go:NN: " before a message.
var logPrefix = regexp.MustCompile(`^(\s*)[\w.-]+\.go:\d+: `)

// dedent removes the common leading spaces of non-empty lines.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	common := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " "))
		if common < 0 || n < common {
			common = n
		}
	}
	if common <= 0 {
		return s
	}
	for i, l := range lines {
		if len(l) >= common {
			lines[i] = l[common:]
		}
	}
	return strings.Join(lines, "\n")
}
