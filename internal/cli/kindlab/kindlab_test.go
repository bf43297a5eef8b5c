package kindlab

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/internal/cli"
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
