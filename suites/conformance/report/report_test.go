package report

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

func TestWriteJUnit(t *testing.T) {
	t.Parallel()
	cases := []Case{
		{Suite: "kp", Name: "setup", Status: Passed, Duration: 1500 * time.Millisecond},
		{Suite: "kp", Name: "pull", Status: Failed, Duration: time.Second, Message: "node n: pulling failed: <missing key>\nmore"},
		{Suite: "rotation", Name: "run", Status: Skipped, Message: "lab cannot run containers"},
	}
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, Meta{Title: "suite"}, cases); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not XML: %v\n%s", err, buf.String())
	}
	if doc.Tests != 3 || doc.Failures != 1 || doc.Skipped != 1 || len(doc.Suites) != 2 {
		t.Fatalf("totals %+v", doc)
	}
	kp := doc.Suites[0]
	if kp.Name != "kp" || kp.Tests != 2 || kp.Time != "2.500" || len(kp.Cases) != 2 {
		t.Fatalf("kp suite %+v", kp)
	}
	if f := kp.Cases[1].Failure; f == nil || f.Message != "node n: pulling failed: <missing key>" || !strings.Contains(f.Body, "more") {
		t.Fatalf("failure %+v", f)
	}
	if doc.Suites[1].Cases[0].Skipped == nil {
		t.Fatal("skip not recorded")
	}
	if got := Summary(cases); got != "1 passed, 1 failed, 1 skipped" {
		t.Fatalf("summary %q", got)
	}
}

func TestFromGoTestJSON(t *testing.T) {
	t.Parallel()
	in := `not json
{"Action":"run","Package":"p/unit","Test":"TestA"}
{"Action":"output","Package":"p/unit","Test":"TestA","Output":"ok\n"}
{"Action":"pass","Package":"p/unit","Test":"TestA","Elapsed":0.5}
{"Action":"run","Package":"p/e2e","Test":"TestKP"}
{"Action":"run","Package":"p/e2e","Test":"TestKP/feature"}
{"Action":"run","Package":"p/e2e","Test":"TestKP/feature/pulls"}
{"Action":"output","Package":"p/e2e","Test":"TestKP/feature/pulls","Output":"missing private key\n"}
{"Action":"fail","Package":"p/e2e","Test":"TestKP/feature/pulls","Elapsed":2}
{"Action":"run","Package":"p/e2e","Test":"TestKP/feature/runs"}
{"Action":"skip","Package":"p/e2e","Test":"TestKP/feature/runs","Elapsed":0}
{"Action":"fail","Package":"p/e2e","Test":"TestKP/feature","Elapsed":2}
{"Action":"fail","Package":"p/e2e","Test":"TestKP","Elapsed":2}
{"Action":"run","Package":"p/e2e","Test":"TestHang"}
{"Action":"fail","Package":"p/e2e","Elapsed":3}
{"Action":"output","Package":"p/nolab","Output":"FAIL: no lab: start the node lab with make node-lab-up\n"}
{"Action":"fail","Package":"p/nolab","Elapsed":0.1}
{"Action":"pass","Package":"p/unit","Elapsed":0.6}
`
	cases, err := FromGoTestJSON(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		suite, name string
		st          Status
	}
	want := []row{
		{"p/unit.TestA", "TestA", Passed},
		{"p/e2e.TestKP", "feature/pulls", Failed},
		{"p/e2e.TestKP", "feature/runs", Skipped},
		{"p/e2e.TestHang", "TestHang", Failed},
		{"p/nolab", "package", Failed},
	}
	if len(cases) != len(want) {
		t.Fatalf("got %d cases: %+v", len(cases), cases)
	}
	for i, w := range want {
		c := cases[i]
		if c.Suite != w.suite || c.Name != w.name || c.Status != w.st {
			t.Errorf("case %d = %s/%s %s, want %s/%s %s", i, c.Suite, c.Name, c.Status, w.suite, w.name, w.st)
		}
	}
	if !strings.Contains(cases[1].Message, "missing private key") || !strings.Contains(cases[4].Message, "make node-lab-up") {
		t.Error("output not carried into the cases")
	}
	if cases[1].Duration != 2*time.Second {
		t.Errorf("duration %s", cases[1].Duration)
	}
}
