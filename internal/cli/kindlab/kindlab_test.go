package kindlab

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/lab"
)

// TestUpRejectsBadFlags checks the flag errors that must come before any cluster work.
func TestUpRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown skip", []string{"kind-lab", "up", "--image", "x", "--skip", "coredns"}, `unknown step "coredns"`},
		{"syncer needs kubectl", []string{"kind-lab", "up", "--image", "x", "--skip", "fixtures,mockkp"}, "--kubectl is required"},
		{"negative workers", []string{"kind-lab", "up", "--image", "x", "--workers", "-1", "--skip", "fixtures,mockkp,syncer"}, "invalid worker count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			s := &cli.Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
			if code := cli.Run(context.Background(), s, tt.args, NewCommand); code == 0 {
				t.Fatalf("exit code 0, want failure; stderr %q", errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("stderr %q, want %q", errOut.String(), tt.want)
			}
		})
	}
}

// TestRemoveWorkerRefuses checks what remove-worker refuses before it touches the cluster.
func TestRemoveWorkerRefuses(t *testing.T) {
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
			var out, errOut bytes.Buffer
			s := &cli.Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
			args := append([]string{"kind-lab", "remove-worker", "--name", "ks"}, tt.args...)
			if code := cli.Run(context.Background(), s, args, NewCommand); code == 0 {
				t.Fatalf("exit code 0, want failure; stderr %q", errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("stderr %q, want %q", errOut.String(), tt.want)
			}
		})
	}
}
