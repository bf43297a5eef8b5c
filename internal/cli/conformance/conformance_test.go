package conformance

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/internal/cli"
)

func TestParseLabels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      []string
		want    map[string][]string
		wantErr bool
	}{
		{in: nil, want: nil},
		{in: []string{"area=kp", "area=plain", "tier=smoke"}, want: map[string][]string{"area": {"kp", "plain"}, "tier": {"smoke"}}},
		{in: []string{"area"}, wantErr: true},
		{in: []string{"=kp"}, wantErr: true},
		{in: []string{"area="}, wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseLabels(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("ParseLabels(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func run(t *testing.T, stdin string, args ...string) (code int, out, errOut string) {
	t.Helper()
	var o, e bytes.Buffer
	s := &cli.Streams{In: strings.NewReader(stdin), Out: &o, ErrOut: &e}
	code = cli.Run(context.Background(), s, args, NewCommand)
	return code, o.String(), e.String()
}

func TestReportCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	junit, html := filepath.Join(dir, "out", "junit.xml"), filepath.Join(dir, "out", "report.html")
	marker := func(assess, profile string) string {
		return `    e2e.go:1: keysync-check: {\"area\":\"plain\",\"feature\":\"f\",\"assessment\":\"` + assess +
			`\",\"profile\":\"` + profile + `\",\"run_profile\":\"required\",\"synchronizer\":\"mine <1.0>\"}\n`
	}
	in := `{"Action":"pass","Package":"p","Test":"TestUnitHelper","Elapsed":0.1}
{"Action":"output","Package":"p","Test":"TestConformance/plain/f/a","Output":"` + marker("a", "required") + `"}
{"Action":"pass","Package":"p","Test":"TestConformance/plain/f/a","Elapsed":0.1}
{"Action":"output","Package":"p","Test":"TestConformance/plain/f/b","Output":"` + marker("b", "required") + `"}
{"Action":"output","Package":"p","Test":"TestConformance/plain/f/b","Output":"    e2e.go:2: pull failed\n"}
{"Action":"fail","Package":"p","Test":"TestConformance/plain/f/b","Elapsed":0.1}
{"Action":"output","Package":"p","Test":"TestConformance/plain/f/c","Output":"` + marker("c", "recommended") + `"}
{"Action":"output","Package":"p","Test":"TestConformance/plain/f/c","Output":"    e2e.go:2: WARN recommended: no KeySynced Event\n"}
{"Action":"pass","Package":"p","Test":"TestConformance/plain/f/c","Elapsed":0.1}
{"Action":"output","Package":"p","Test":"TestConformance/kp/g","Output":"    env.go:1: skipping: lab lacks capability mockkp\n"}
{"Action":"skip","Package":"p","Test":"TestConformance/kp/g","Elapsed":0}
`
	code, out, errOut := run(t, in, "conformance", "report", "--junit", junit, "--html", html)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || lines[len(lines)-1] != "1 passed, 1 failed, 1 skipped, 1 warned" ||
		lines[len(lines)-2] != "required: 1 passed, 1 failed, 1 skipped; recommended: 0 passed, 1 warned, 0 failed, 0 skipped" ||
		!strings.Contains(out, "synchronizer: mine <1.0>; profile: required") ||
		!strings.Contains(errOut, "FAIL f/b") || !strings.Contains(errOut, "WARN f/c") ||
		!strings.Contains(errOut, "1 tests outside TestConformance") {
		t.Fatalf("code %d out %q err %q", code, out, errOut)
	}
	data, err := os.ReadFile(junit)
	if err != nil || !strings.Contains(string(data), `<testcase name="b" classname="f"`) || strings.Contains(string(data), "TestUnitHelper") {
		t.Fatalf("junit: %v\n%s", err, data)
	}
	page, err := os.ReadFile(html)
	if err != nil || !strings.Contains(string(page), "mine &lt;1.0&gt;") {
		t.Fatalf("html: %v\n%s", err, page)
	}
	code, out, _ = run(t, `{"Action":"pass","Package":"p","Test":"TestConformance/plain/f/a","Elapsed":0.1}`, "conformance", "report")
	if code != 0 || !strings.Contains(out, "1 passed, 0 failed") {
		t.Fatalf("all pass: code %d out %q", code, out)
	}
	code, out, _ = run(t, `{"Action":"output","Package":"p","Output":"FAIL: no lab\n"}
{"Action":"fail","Package":"p","Elapsed":0.1}`, "conformance", "report")
	if code != 1 || !strings.Contains(out, "0 passed, 1 failed") {
		t.Fatalf("no lab: code %d out %q", code, out)
	}
}

func TestProfileFlag(t *testing.T) {
	t.Parallel()
	code, _, errOut := run(t, "", "conformance", "--profile", "strict", "--lab-env", filepath.Join(t.TempDir(), "lab.env"))
	if code == 0 || !strings.Contains(errOut, `unknown profile "strict"`) {
		t.Fatalf("code %d err %q", code, errOut)
	}
}

func TestNoLabFails(t *testing.T) {
	t.Parallel()
	code, _, errOut := run(t, "", "conformance", "--lab-env", filepath.Join(t.TempDir(), "lab.env"))
	if code == 0 || !strings.Contains(errOut, "make node-lab-up") {
		t.Fatalf("code %d err %q", code, errOut)
	}
	code, _, errOut = run(t, "", "conformance", "--labels", "area")
	if code == 0 || !strings.Contains(errOut, "want key=value") {
		t.Fatalf("bad label: code %d err %q", code, errOut)
	}
}
