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
	junit := filepath.Join(t.TempDir(), "out", "junit.xml")
	in := `{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.1}
{"Action":"fail","Package":"p","Test":"TestB","Elapsed":0.1}
{"Action":"output","Package":"p","Test":"TestB","Output":"pull failed\n"}
`
	code, out, errOut := run(t, in, "conformance", "report", "--junit", junit)
	if code != 1 || !strings.Contains(out, "1 passed, 1 failed, 0 skipped") || !strings.Contains(errOut, "FAIL p.TestB/TestB") {
		t.Fatalf("code %d out %q err %q", code, out, errOut)
	}
	data, err := os.ReadFile(junit)
	if err != nil || !strings.Contains(string(data), `<testcase name="TestB"`) {
		t.Fatalf("junit: %v\n%s", err, data)
	}
	code, out, _ = run(t, `{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.1}`, "conformance", "report")
	if code != 0 || !strings.Contains(out, "1 passed, 0 failed") {
		t.Fatalf("all pass: code %d out %q", code, out)
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
