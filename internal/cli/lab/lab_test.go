package lab

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/internal/cli"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	s := &cli.Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut, Logger: slog.New(slog.DiscardHandler)}
	code := cli.Run(context.Background(), s, args, NewCommand)
	return code, out.String(), errOut.String()
}

func TestNodeCommands(t *testing.T) {
	dir := t.TempDir()
	work := filepath.Join(dir, "lab")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "status of a lab that is not up", args: []string{"lab", "node", "status", "--work-dir", work},
			wantCode: 1, wantOut: "✗ syncer       not running\nnode lab: NOT ready (6 of 6 components down)\n", wantErr: "make node-lab-up"},
		{name: "down of a lab that is not up: progress on stderr", args: []string{"lab", "node", "down", "--work-dir", work,
			"--env-file", filepath.Join(dir, "lab.env")},
			wantCode: 0, wantErr: "✓ Removing the env file (absent)"},
		{name: "up without the CRI-O and Kubernetes bin dirs", args: []string{"lab", "node", "up", "--work-dir", work,
			"--crio-bin-dir", "", "--k8s-bin-dir", ""},
			wantCode: 1, wantErr: "CRI-O bin dir is not set"},
		{name: "serve is gone", args: []string{"lab", "node", "serve"}, wantCode: 1, wantErr: "unknown command"},
		{name: "unexpected argument", args: []string{"lab", "node", "up", "extra"}, wantCode: 1, wantErr: "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d\nout: %s\nerr: %s", code, tt.wantCode, out, errOut)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("out lacks %q:\n%s", tt.wantOut, out)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("err lacks %q:\n%s", tt.wantErr, errOut)
			}
			if strings.Contains(out, "✓") {
				t.Errorf("progress lines on stdout:\n%s", out)
			}
		})
	}
}

func TestOptionsAreAbsolute(t *testing.T) {
	f := &flagpole{workDir: "_out/node-lab", envFile: "_out/lab.env", crioBinDir: "c", k8sBinDir: "/k", sourceDir: "."}
	opts, err := f.options(&cli.Streams{})
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{"work": opts.WorkDir, "env": opts.EnvFile, "bin": opts.BinDir,
		"crio": opts.CRIOBinDir, "k8s": opts.K8sBinDir, "source": opts.SourceDir} {
		if !filepath.IsAbs(p) {
			t.Errorf("%s dir %q is not absolute", name, p)
		}
	}
	if opts.K8sBinDir != "/k" || !strings.HasSuffix(opts.WorkDir, "/_out/node-lab") {
		t.Errorf("paths changed: %+v", opts)
	}
}
