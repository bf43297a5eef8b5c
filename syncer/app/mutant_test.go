//go:build !keysync_mutants

package app

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedBuildHasNoMutants: without the keysync_mutants tag there is no --mutant flag and
// the binary carries none of the defects' code.
func TestShippedBuildHasNoMutants(t *testing.T) {
	if _, err := ParseFlags([]string{"--mutant", "mode-0644"}, func(string) string { return "" }); err == nil ||
		!strings.Contains(err.Error(), "flag provided but not defined: -mutant") {
		t.Fatalf("ParseFlags(--mutant) = %v, want an undefined flag error", err)
	}
	if testing.Short() {
		return
	}
	bin := filepath.Join(t.TempDir(), "keysync-syncer")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/keysync-dev/keysync/cmd/keysync-syncer")
	cmd.Env = append(os.Environ(), "GOFLAGS=-tags=containers_image_openpgp")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	// The flag's help text and the table of defects live only in the tagged files.
	for _, s := range []string{"switch on one deliberate defect", "unknown mutant", "syncer/internal/mutant.Set"} {
		if strings.Contains(string(data), s) {
			t.Errorf("the shipped keysync-syncer contains %q: mutant code is linked in", s)
		}
	}
}
