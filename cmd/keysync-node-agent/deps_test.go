package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The agent binary is pushed to users' clusters and copied into kind nodes: it must not link
// the labs, the suites' framework or the testing package.
func TestDeps(t *testing.T) {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v: %s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %q", deps)
	}
	forbidden := []string{"sigs.k8s.io/kind", "sigs.k8s.io/e2e-framework", "testing", "k8s.io/client-go", "github.com/spf13/cobra"}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("keysync-node-agent links %s", d)
			}
		}
	}
}
