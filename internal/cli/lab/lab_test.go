package lab

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/lab"
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
		{name: "status of a lab that is not up", args: []string{"lab", "status", "--kind", "node", "--work-dir", work},
			wantCode: 1, wantOut: "✗ syncer       not running\nnode lab: NOT ready (7 of 7 components down)\n", wantErr: "keysync lab up --kind node"},
		{name: "down of a lab that is not up: progress on stderr", args: []string{"lab", "down", "--kind", "node", "--work-dir", work,
			"--lab-env", filepath.Join(dir, "lab.env")},
			wantCode: 0, wantErr: "✓ Removing the env file (absent)"},
		{name: "up without the CRI-O and Kubernetes bin dirs", args: []string{"lab", "up", "--kind", "node", "--work-dir", work,
			"--crio-bin-dir", "", "--k8s-bin-dir", ""},
			wantCode: 1, wantErr: "CRI-O bin dir is not set"},
		{name: "serve is gone", args: []string{"lab", "serve"}, wantCode: 1, wantErr: "unknown command"},
		{name: "unexpected argument", args: []string{"lab", "up", "--kind", "node", "extra"}, wantCode: 1, wantErr: "unknown command"},
		{name: "no kind", args: []string{"lab", "status"}, wantCode: 1, wantErr: "--kind is required: one of node, kind, cluster"},
		{name: "unknown kind", args: []string{"lab", "status", "--kind", "vm"}, wantCode: 1, wantErr: `--kind "vm": want one of node, kind, cluster`},
		{name: "another kind's flag", args: []string{"lab", "status", "--kind", "node", "--work-dir", work, "--image", "x", "--registry", "r"}, wantCode: 1,
			wantErr: "--image applies to --kind kind, not node\n--registry applies to --kind cluster, not node"},
		{name: "synchronizer is not the cluster lab's", args: []string{"lab", "up", "--kind", "cluster", "--synchronizer", "none"}, wantCode: 1,
			wantErr: "--synchronizer applies to --kind node|kind, not cluster"},
		{name: "out is not the node lab's", args: []string{"lab", "down", "--kind", "node", "--out", "x"}, wantCode: 1, wantErr: "--out applies to --kind kind|cluster, not node"},
		{name: "kind: unknown skip", args: []string{"lab", "up", "--kind", "kind", "--image", "x", "--skip", "coredns"}, wantCode: 1, wantErr: `unknown step "coredns"`},
		{name: "kind: negative workers", args: []string{"lab", "up", "--kind", "kind", "--workers", "-1"}, wantCode: 1, wantErr: "invalid worker count -1"},
		{name: "node lab cannot add nodes", args: []string{"lab", "add-node", "--kind", "node", "--work-dir", work, "n2"}, wantCode: 1,
			wantErr: "the node lab cannot add or remove nodes"},
		{name: "cluster: no registry", args: []string{"lab", "up", "--kind", "cluster", "--kubeconfig", "k"}, wantCode: 1, wantErr: "--registry is required"},
		{name: "cluster: add without remove", args: []string{"lab", "up", "--kind", "cluster", "--kubeconfig", "k", "--registry", "r", "--add-node-cmd", "x"},
			wantCode: 1, wantErr: "--add-node-cmd and --remove-node-cmd go together"},
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
	f := &flagpole{kind: "node", labEnv: "_out/lab.env", nodeOpts: nodeFlags{workDir: "_out/node-lab", crioBinDir: "c", k8sBinDir: "/k", sourceDir: "."}}
	opts, err := f.nodeOptions()
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

// TestRemoveNodeRefuses checks what the kind lab's remove-node refuses before it touches the
// cluster.
func TestRemoveNodeRefuses(t *testing.T) {
	dir := t.TempDir()
	envPath := filepath.Join(dir, "lab.env")
	if err := lab.WriteEnv(envPath, lab.Env{Lab: lab.KindKind, Kubeconfig: filepath.Join(dir, "kubeconfig"), Nodes: []string{"ks-control-plane", "ks-worker"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no lab", []string{"--lab-env", filepath.Join(dir, "absent.env"), "ks-worker"}, "is it up?"},
		{"unknown node", []string{"--lab-env", envPath, "ks-worker9"}, "node ks-worker9 is not in the lab (nodes: ks-control-plane, ks-worker)"},
		{"control plane", []string{"--lab-env", envPath, "ks-control-plane"}, "is the lab's control plane"},
		{"no name", []string{"--lab-env", envPath}, "accepts 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := run(t, append([]string{"lab", "remove-node", "--kind", "kind", "--name", "ks"}, tt.args...)...)
			if code == 0 || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr %q; want failure with %q", code, errOut, tt.want)
			}
		})
	}
}
