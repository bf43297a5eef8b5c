package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

type junitSuites struct {
	XMLName    xml.Name         `xml:"testsuites"`
	Name       string           `xml:"name,attr"`
	Tests      int              `xml:"tests,attr"`
	Failures   int              `xml:"failures,attr"`
	Skipped    int              `xml:"skipped,attr"`
	Time       string           `xml:"time,attr"`
	Properties *junitProperties `xml:"properties,omitempty"`
	Suites     []junitSuite     `xml:"testsuite"`
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
	Name       string           `xml:"name,attr"`
	ClassName  string           `xml:"classname,attr"`
	Time       string           `xml:"time,attr"`
	Properties *junitProperties `xml:"properties,omitempty"`
	Failure    *junitMessage    `xml:"failure,omitempty"`
	Skipped    *junitMessage    `xml:"skipped,omitempty"`
	SystemOut  string           `xml:"system-out,omitempty"`
}

type junitProperties struct {
	Items []junitProperty `xml:"property"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Body    string `xml:",chardata"`
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func props(kv ...string) *junitProperties {
	var p junitProperties
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			p.Items = append(p.Items, junitProperty{Name: kv[i], Value: kv[i+1]})
		}
	}
	if len(p.Items) == 0 {
		return nil
	}
	return &p
}

// WriteJUnit writes cases as JUnit XML: one testsuite per Suite, in first-seen order. Each
// testcase carries properties profile and area; a warning is a passing testcase with
// property warning (its reason) and its reason and diagnostics in system-out; a failure's
// diagnostics go to its system-out. The run's per-profile counts and meta are properties of
// testsuites.
func WriteJUnit(w io.Writer, m Meta, cases []Case) error {
	name := m.Title
	by := ByProfile(cases)
	doc := junitSuites{Name: name, Properties: props(
		"synchronizer", m.SynchronizerOrUnknown(), "lab", m.Lab, "profile", m.Profile,
		"required", tallyText(by[ProfileRequired]), "recommended", tallyText(by[ProfileRecommended]),
		"summary", ProfileSummary(cases), "not-selected", notSelectedCount(m), "not-selected-line", m.NotSelectedLine())}
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
		jc := junitCase{Name: c.Name, ClassName: c.Suite, Time: secs(c.Duration),
			Properties: props("profile", ProfileOf(c), "area", c.Area)}
		msg := firstLine(c.Message)
		switch c.Status {
		case Failed:
			jc.Failure = &junitMessage{Message: msg, Body: c.Message}
			jc.SystemOut = c.Diagnostics
			s.Failures++
			doc.Failures++
		case Skipped:
			jc.Skipped = &junitMessage{Message: msg}
			s.Skipped++
			doc.Skipped++
		case Warned:
			jc.Properties.Items = append(jc.Properties.Items, junitProperty{Name: "warning", Value: msg})
			jc.SystemOut = joinNonEmpty(WarnPrefix+strings.TrimSpace(c.Message), c.Diagnostics)
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

func tallyText(t Tally) string {
	return fmt.Sprintf("%d passed, %d warned, %d failed, %d skipped", t.Passed, t.Warned, t.Failed, t.Skipped)
}

func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if strings.TrimSpace(p) != "" {
			out = append(out, strings.TrimRight(p, "\n"))
		}
	}
	return strings.Join(out, "\n\n")
}

// notSelectedCount is the number of features and checks the selection left out ("" when
// none).
func notSelectedCount(m Meta) string {
	if n := len(m.NotSelected) + len(m.NotSelectedChecks); n > 0 {
		return strconv.Itoa(n)
	}
	return ""
}
