package conformance

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

func TestResolveLabEnv(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module github.com/keysync-dev/keysync\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, "suites", "e2e")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	given := filepath.Join(root, "given.env")
	fromEnv := filepath.Join(root, "env.env")
	def := filepath.Join(root, "_out", "lab.env")
	for _, p := range []string{given, fromEnv} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		flag, env string
		wd        string
		mkDefault bool
		want      string
		wantErr   string
	}{
		{name: "flag wins", flag: given, env: fromEnv, wd: sub, want: given},
		{name: "env next", env: fromEnv, wd: sub, want: fromEnv},
		{name: "default in checkout", wd: sub, mkDefault: true, want: def},
		{name: "missing default says how to start a lab", wd: sub, wantErr: "make node-lab-up"},
		{name: "missing flag file", flag: filepath.Join(root, "nope.env"), wd: sub, wantErr: "(--lab-env) does not exist"},
		{name: "outside the checkout", wd: t.TempDir(), wantErr: "not inside the keysync checkout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: the default file is created and removed.
			if tc.mkDefault {
				if err := os.MkdirAll(filepath.Dir(def), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(def, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				defer os.Remove(def)
			}
			got, err := ResolveLabEnv(tc.flag, func(k string) string {
				if k == EnvLabEnv {
					return tc.env
				}
				return ""
			}, func() (string, error) { return tc.wd, nil })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrNoLab) {
					t.Fatalf("err = %v, want ErrNoLab containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestHookNodeAdder(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	hook := func(line string) []string { return nodedriver.ParseCommand(line) }
	record := hook("echo >>" + log)
	tests := []struct {
		name              string
		add, remove       []string
		wantAddErr        string
		wantRemoveErr     error
		wantRemoveErrText string
		wantCalls         string
		// env is the lab env file; with capability add-node its commands are used unless
		// hooks are given, and the added node is reached through driverFor's driver.
		env          lab.Env
		wantOwnDrive bool
	}{
		{name: "both hooks run with the node name", add: record, remove: record, wantCalls: "ks-1-node\nks-1-node\n"},
		{name: "a failing add hook is an error quoting its stderr", add: hook("echo no capacity >&2; exit 1"), wantAddErr: "no capacity"},
		{name: "a failing add hook: the half-joined node is removed", add: hook("f() { echo \"$@\" >>" + log + "; exit 1; }; f"), remove: record,
			wantAddErr: "exit status 1", wantCalls: "ks-1-node\nks-1-node\n"},
		{name: "no remove hook: unsupported, the node stays", add: record, wantRemoveErr: nodedriver.ErrUnsupported,
			wantRemoveErrText: "--hook-remove-node", wantCalls: "ks-1-node\n"},
		{name: "a failing remove hook is an error", add: record, remove: hook("exit 7"), wantRemoveErrText: "exit status 7", wantCalls: "ks-1-node\n"},
		{name: "the lab's ADD_NODE_CMD and REMOVE_NODE_CMD run with the node name", wantCalls: "ks-1-node\nks-1-node\n", wantOwnDrive: true,
			env: lab.Env{Capabilities: []lab.Capability{lab.CapAddNode}, AddNodeCmd: "echo >>" + log, RemoveNodeCmd: "echo >>" + log}},
		{name: "--hook-add-node overrides the lab's commands", add: record, remove: record, wantCalls: "ks-1-node\nks-1-node\n",
			env: lab.Env{Capabilities: []lab.Capability{lab.CapAddNode}, AddNodeCmd: "exit 9", RemoveNodeCmd: "exit 9"}},
		{name: "a failing ADD_NODE_CMD: the half-joined node is removed by REMOVE_NODE_CMD", wantAddErr: "exit status 1", wantCalls: "ks-1-node\n",
			env: lab.Env{Capabilities: []lab.Capability{lab.CapAddNode}, AddNodeCmd: "exit 1; true", RemoveNodeCmd: "echo >>" + log}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_ = os.Remove(log)
			cfg := nodedriver.NewConfig()
			cfg.AddNodeCmd, cfg.RemoveNodeCmd, cfg.Stderr = tt.add, tt.remove, nil
			drv, own := nodedriver.New(cfg), nodedriver.New(nodedriver.NewConfig())
			a := newNodeAdder(tt.env, cfg, drv, func(context.Context, string) (nodedriver.Driver, error) { return own, nil })
			got, err := a.AddNode(context.Background(), "ks-1-node")
			if tt.wantAddErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantAddErr) {
					t.Fatalf("AddNode err = %v, want %q", err, tt.wantAddErr)
				}
				if calls, _ := os.ReadFile(log); string(calls) != tt.wantCalls {
					t.Errorf("hook calls %q, want %q", calls, tt.wantCalls)
				}
				return
			}
			want := drv
			if tt.wantOwnDrive {
				want = own
			}
			if err != nil || got != want {
				t.Fatalf("AddNode = %v, %v; want driver %v", got, err, want)
			}
			err = a.RemoveNode(context.Background(), "ks-1-node")
			switch {
			case tt.wantRemoveErr != nil && !errors.Is(err, tt.wantRemoveErr),
				tt.wantRemoveErrText != "" && (err == nil || !strings.Contains(err.Error(), tt.wantRemoveErrText)),
				tt.wantRemoveErr == nil && tt.wantRemoveErrText == "" && err != nil:
				t.Fatalf("RemoveNode err = %v, want %v %q", err, tt.wantRemoveErr, tt.wantRemoveErrText)
			}
			calls, _ := os.ReadFile(log)
			if string(calls) != tt.wantCalls {
				t.Errorf("hook calls %q, want %q", calls, tt.wantCalls)
			}
		})
	}
}

// Without hooks a lab lacking capability add-node has no NodeAdder.
func TestNoNodeAdder(t *testing.T) {
	for _, env := range []lab.Env{{}, {AddNodeCmd: "add", RemoveNodeCmd: "rm"}} {
		if a := newNodeAdder(env, nodedriver.NewConfig(), nil, nil); a != nil {
			t.Errorf("env %+v: NodeAdder %v, want none", env, a)
		}
	}
}
