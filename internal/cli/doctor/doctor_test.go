package doctor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keysync-dev/keysync/internal/cli"
	doctorcmd "github.com/keysync-dev/keysync/internal/cli/doctor"
	"github.com/keysync-dev/keysync/internal/doctor"
	dt "github.com/keysync-dev/keysync/internal/doctor/doctortest"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
)

func TestDoctorCommand(t *testing.T) {
	ctx := t.Context()
	srv, cs := dt.Cluster(t)
	dt.Deploy(ctx, t, cs, "healthy", dt.Config())
	dt.Deploy(ctx, t, cs, "broken", dt.Config())
	if err := cs.RbacV1().Roles("broken").Delete(ctx, names.Addon, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	badKubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(badKubeconfig, []byte("not: [a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A kubeconfig whose server does not answer (a closed port on loopback).
	deadKubeconfig := filepath.Join(t.TempDir(), "dead")
	if err := os.WriteFile(deadKubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}

	fake := &dt.Inspector{KeysPath: map[string]string{"n2": "/var/lib/keys"}}
	var cleaned bool
	withFake := func(context.Context, *rest.Config, kubernetes.Interface) (doctor.NodeInspector, func(context.Context) error, error) {
		return fake, func(context.Context) error { cleaned = true; return nil }, nil
	}
	var cleanedAfterFailure bool
	failing := func(context.Context, *rest.Config, kubernetes.Interface) (doctor.NodeInspector, func(context.Context) error, error) {
		return nil, func(context.Context) error { cleanedAfterFailure = true; return nil }, errors.New("image pull refused")
	}
	leaving := func(context.Context, *rest.Config, kubernetes.Interface) (doctor.NodeInspector, func(context.Context) error, error) {
		return &dt.Inspector{}, func(context.Context) error { return errors.New("namespace keysync-doctor still there") }, nil
	}
	// kubetest runs no namespace controller: finalize the agent's namespace as it would.
	var controller atomic.Bool
	controller.Store(true)
	namespaceController(ctx, t, cs, &controller)
	kc := srv.KubeconfigPath
	// A lab env file naming an agent image no node can run (kube-apiserver alone schedules no
	// pods): the agent never gets ready, doctor says so per node and removes it again.
	labEnv := filepath.Join(t.TempDir(), "cluster.env")
	if err := lab.WriteEnv(labEnv, lab.Env{Lab: lab.KindCluster, Kubeconfig: kc, Nodes: []string{"n1"},
		NodeAccess: lab.AccessPod, NodeAgentImage: "registry.invalid/keysync-node-agent:test"}); err != nil {
		t.Fatal(err)
	}
	agentCmd := func(s *cli.Streams) *cobra.Command { return doctorcmd.NewAgentCommand(s) }
	tests := []struct {
		name      string
		cmd       cli.Subcommand // default: NewCommandWith(inspector)
		inspector doctorcmd.InspectorFunc
		args      []string
		code      int
		out       []string // substrings of stdout
		errOut    string   // substring of stderr
		json      bool
	}{
		{name: "healthy, no inspector", args: []string{"--kubeconfig", kc, "--namespace", "healthy"}, code: 0,
			out: []string{"✓ role: Role healthy/addon-image-key-synchronizer grants",
				"- node-keys-tree: skipped: this keysync has no node agent for doctor yet; the node-side checks did not run",
				"- kp-access: skipped: pass --check-kp", "0 failed"}},
		{name: "healthy, --no-node-checks, json", args: []string{"--kubeconfig", kc, "--namespace", "healthy", "-o", "json", "--no-node-checks"},
			inspector: withFake, code: 0, json: true, out: []string{`"found": "skipped: --no-node-checks; the node-side checks did not run"`}},
		{name: "broken Role", args: []string{"--kubeconfig", kc, "--namespace", "broken"}, code: doctorcmd.ExitFailed,
			out:    []string{"✗ role: Role broken/addon-image-key-synchronizer not found → re-create it"},
			errOut: "ERROR: 1 check result(s) failed"},
		{name: "inspector finds CRI-O's keys path elsewhere", args: []string{"--kubeconfig", kc, "--namespace", "healthy"}, inspector: withFake,
			code: doctorcmd.ExitFailed, out: []string{"✗ node-keys-path: node n2: CRI-O's decryption_keys_path is /var/lib/keys", "✓ node-keys-tree: node n1"}},
		{name: "inspector cannot start", args: []string{"--kubeconfig", kc, "--namespace", "healthy"}, inspector: failing,
			code: doctorcmd.ExitFailed, out: []string{"✗ node-keys-tree: node n1: cannot audit the keys tree: failed to start the node agent: image pull refused"}},
		{name: "inspector cannot remove what it started: exit 1 although every check passed", args: []string{"--kubeconfig", kc, "--namespace", "healthy"},
			inspector: leaving, code: doctorcmd.ExitFailed, out: []string{"0 failed"}, errOut: "ERROR: namespace keysync-doctor still there"},
		{name: "agent command without an agent image: node checks skipped", cmd: agentCmd,
			args: []string{"--kubeconfig", kc, "--namespace", "healthy"}, code: 0,
			out: []string{"- node-keys-tree: skipped: node-side checks skipped: no node agent image (pass --agent-image"}},
		{name: "agent command, --lab-env: kubeconfig and image from the env file, agent never ready", cmd: agentCmd,
			args: []string{"--lab-env", labEnv, "--namespace", "healthy", "--agent-ready-timeout", "2s"}, code: doctorcmd.ExitFailed,
			out: []string{"✗ node-keys-tree: node n1: cannot audit the keys tree: failed to start the node agent: agent pods (image registry.invalid/keysync-node-agent:test) not ready",
				"✓ role: Role healthy/"}},
		{name: "bad output", args: []string{"--kubeconfig", kc, "-o", "yaml"}, code: doctorcmd.ExitCannotRun, errOut: `unknown --output "yaml"`},
		{name: "unknown flag", args: []string{"--kubeconfig", kc, "--frobnicate"}, code: doctorcmd.ExitCannotRun, errOut: "unknown flag: --frobnicate"},
		{name: "bad kubeconfig", args: []string{"--kubeconfig", badKubeconfig}, code: doctorcmd.ExitCannotRun, errOut: "failed to load kubeconfig"},
		{name: "no kubeconfig", args: []string{"--kubeconfig", ""}, code: doctorcmd.ExitCannotRun, errOut: "no --kubeconfig"},
		{name: "API server unreachable", args: []string{"--kubeconfig", deadKubeconfig}, code: doctorcmd.ExitCannotRun, errOut: "failed to reach the API server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			s := &cli.Streams{Out: &out, ErrOut: &errOut}
			build := tc.cmd
			if build == nil {
				build = func(s *cli.Streams) *cobra.Command { return doctorcmd.NewCommandWith(s, tc.inspector) }
			}
			code := cli.Run(ctx, s, append([]string{"doctor"}, tc.args...), build)
			t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			for _, want := range tc.out {
				if !strings.Contains(out.String(), want) {
					t.Errorf("stdout lacks %q", want)
				}
			}
			if tc.errOut != "" && !strings.Contains(errOut.String(), tc.errOut) {
				t.Errorf("stderr lacks %q", tc.errOut)
			}
			if strings.Contains(out.String()+errOut.String(), dt.APIKey) {
				t.Error("the output contains the API key")
			}
			if tc.json {
				var rep doctor.Report
				if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Schema != doctor.Schema || rep.Namespace != "healthy" || rep.Failed() {
					t.Errorf("JSON report %+v, %v", rep.Summary, err)
				}
			}
		})
	}
	// Ctrl-C or SIGTERM (main cancels the context) while the agent runs, or once the report is
	// out and doctor removes the agent.
	for _, tc := range []struct {
		name       string
		inCleanup  bool // the signal arrives during the cleanup
		code       int
		errOut     string
		out        string // a line of the whole report
		notErrText string
	}{
		{name: "interrupted while the agent runs: removed, exit 2", code: doctorcmd.ExitCannotRun,
			errOut: "ERROR: interrupted, the results are incomplete: context canceled"},
		{name: "interrupted while the agent is removed: removed, results whole, exit 0", inCleanup: true, code: 0, notErrText: "interrupted",
			out: "doctor (namespace healthy): "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runCtx, interrupt := context.WithCancel(ctx)
			defer interrupt()
			var removed bool
			interrupted := func(context.Context, *rest.Config, kubernetes.Interface) (doctor.NodeInspector, func(context.Context) error, error) {
				if !tc.inCleanup {
					interrupt()
				}
				return &dt.Inspector{}, func(ctx context.Context) error {
					if tc.inCleanup {
						interrupt()
					}
					if ctx.Err() != nil {
						return ctx.Err()
					}
					removed = true
					return nil
				}, nil
			}
			var out, errOut bytes.Buffer
			code := cli.Run(runCtx, &cli.Streams{Out: &out, ErrOut: &errOut}, []string{"doctor", "--kubeconfig", kc, "--namespace", "healthy"},
				func(s *cli.Streams) *cobra.Command { return doctorcmd.NewCommandWith(s, interrupted) })
			t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			if tc.errOut != "" && !strings.Contains(errOut.String(), tc.errOut) {
				t.Errorf("stderr lacks %q", tc.errOut)
			}
			if tc.out != "" && !strings.Contains(out.String(), tc.out) {
				t.Errorf("stdout lacks %q: the report is not whole", tc.out)
			}
			if tc.errOut == "" && tc.out == "" {
				t.Fatal("the case asserts neither stdout nor stderr")
			}
			if tc.notErrText != "" && strings.Contains(errOut.String(), tc.notErrText) {
				t.Errorf("stderr has %q", tc.notErrText)
			}
			if !removed {
				t.Error("the agent was not removed (or with a cancelled context)")
			}
		})
	}
	if !cleaned || !cleanedAfterFailure {
		t.Errorf("the inspector's cleanup did not run (after a run %v, after a failed start %v)", cleaned, cleanedAfterFailure)
	}
	// The agent that never got ready was removed with its namespace, and doctor waited until
	// the namespace was gone.
	if _, err := cs.CoreV1().Namespaces().Get(ctx, doctorcmd.AgentNamespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s still there after doctor (%v)", doctorcmd.AgentNamespace, err)
	}
}

func TestDoctorCommandCleanupTimeout(t *testing.T) {
	ctx := t.Context()
	srv, cs := dt.Cluster(t)
	dt.Deploy(ctx, t, cs, "healthy", dt.Config())
	labEnv := filepath.Join(t.TempDir(), "cluster.env")
	if err := lab.WriteEnv(labEnv, lab.Env{Lab: lab.KindCluster, Kubeconfig: srv.KubeconfigPath, Nodes: []string{"n1"},
		NodeAccess: lab.AccessPod, NodeAgentImage: "registry.invalid/keysync-node-agent:test"}); err != nil {
		t.Fatal(err)
	}
	// No namespace controller: the agent's namespace stays Terminating.
	var out, errOut bytes.Buffer
	start := time.Now()
	code := cli.Run(ctx, &cli.Streams{Out: &out, ErrOut: &errOut}, []string{"doctor", "--lab-env", labEnv, "--namespace", "healthy",
		"--agent-ready-timeout", "1s", "--cleanup-timeout", "2s"}, doctorcmd.NewAgentCommand)
	took := time.Since(start)
	t.Logf("took %s\nstdout:\n%s\nstderr:\n%s", took, out.String(), errOut.String())
	if code != doctorcmd.ExitFailed {
		t.Errorf("exit code %d, want %d", code, doctorcmd.ExitFailed)
	}
	for _, want := range []string{"doctor's node agent not gone within 2s (namespace keysync-doctor still there, phase Terminating", "keysync conformance cleanup"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if took < 3*time.Second || took > time.Minute {
		t.Errorf("took %s: want the ready timeout, then the cleanup timeout", took)
	}
}
