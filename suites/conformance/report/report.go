// Package report turns conformance results into JUnit XML and a one-line summary. Results
// come from the CLI runner (conformance.Run) or from `go test -json` output (FromGoTestJSON),
// since e2e-framework has no JUnit writer of its own.
package report

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"sort"
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
)

// Case is one test case: a feature's step, or a go test (sub)test.
type Case struct {
	Suite    string // feature (or top-level test) name
	Name     string // step (or subtest path)
	Status   Status
	Duration time.Duration
	Message  string // failure/skip message or output
}

// Counts returns how many cases passed, failed and were skipped.
func Counts(cases []Case) (passed, failed, skipped int) {
	for _, c := range cases {
		switch c.Status {
		case Passed:
			passed++
		case Failed:
			failed++
		default:
			skipped++
		}
	}
	return
}

// Summary is the line CI greps: "N passed, N failed, N skipped".
func Summary(cases []Case) string {
	p, f, s := Counts(cases)
	return fmt.Sprintf("%d passed, %d failed, %d skipped", p, f, s)
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Body    string `xml:",chardata"`
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes cases as JUnit XML: one testsuite per Suite, in first-seen order.
func WriteJUnit(w io.Writer, name string, cases []Case) error {
	doc := junitSuites{Name: name}
	index := map[string]int{}
	var total time.Duration
	for _, c := range cases {
		i, ok := index[c.Suite]
		if !ok {
			i = len(doc.Suites)
			index[c.Suite] = i
			doc.Suites = append(doc.Suites, junitSuite{Name: c.Suite})
		}
		s := &doc.Suites[i]
		jc := junitCase{Name: c.Name, ClassName: c.Suite, Time: secs(c.Duration)}
		msg := firstLine(c.Message)
		switch c.Status {
		case Failed:
			jc.Failure = &junitMessage{Message: msg, Body: c.Message}
			s.Failures++
			doc.Failures++
		case Skipped:
			jc.Skipped = &junitMessage{Message: msg}
			s.Skipped++
			doc.Skipped++
		default:
			jc.SystemOut = c.Message
		}
		s.Cases = append(s.Cases, jc)
		s.Tests++
		doc.Tests++
		st, _ := time.ParseDuration(s.Time + "s")
		s.Time = secs(st + c.Duration)
		total += c.Duration
	}
	doc.Time = secs(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("failed to write JUnit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("failed to write JUnit: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("failed to write JUnit: %w", err)
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// testEvent is one line of `go test -json` (cmd/test2json).
type testEvent struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// FromGoTestJSON converts `go test -json` output into cases: one per leaf test (a test with
// no subtests), grouped by top-level test as "package.TestName". A package that failed
// without any failing test (a build error, or TestMain failing before the tests, such as "no
// lab") becomes one failed case named "package" carrying the package output. Non-JSON lines
// are ignored.
func FromGoTestJSON(r io.Reader) ([]Case, error) {
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
				if i := strings.LastIndexByte(ev.Test, '/'); i >= 0 {
					hasChild[ev.Package+"\x00"+ev.Test[:i]] = true
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
		return nil, fmt.Errorf("failed to read go test output: %w", err)
	}
	var leaves []*rec
	failedTests := map[string]bool{}
	for key, rc := range tests {
		if rc.action == "fail" {
			failedTests[rc.pkg] = true
		}
		if !hasChild[key] {
			leaves = append(leaves, rc)
		}
	}
	sort.Slice(leaves, func(i, j int) bool { return leaves[i].order < leaves[j].order })
	var cases []Case
	for _, rc := range leaves {
		top, rest, _ := strings.Cut(rc.test, "/")
		name := rest
		if name == "" {
			name = top
		}
		st := Status(rc.action)
		if rc.action == "" {
			st = Failed // started, never finished: the binary died or timed out
		}
		cases = append(cases, Case{Suite: rc.pkg + "." + top, Name: name, Status: st,
			Duration: time.Duration(rc.elapsed * float64(time.Second)), Message: rc.out.String()})
	}
	var pkgList []*rec
	for _, rc := range pkgs {
		pkgList = append(pkgList, rc)
	}
	sort.Slice(pkgList, func(i, j int) bool { return pkgList[i].order < pkgList[j].order })
	for _, rc := range pkgList {
		if rc.action == "fail" && !failedTests[rc.pkg] {
			cases = append(cases, Case{Suite: rc.pkg, Name: "package", Status: Failed,
				Duration: time.Duration(rc.elapsed * float64(time.Second)), Message: rc.out.String()})
		}
	}
	return cases, nil
}
