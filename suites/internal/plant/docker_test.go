package plant

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cpFailsAfterExtracting wraps the stand-in docker CLI bin: `docker cp` unpacks as bin does and
// then fails (then: "exit 1") or hangs until it is killed (then: "exec sleep 30").
func cpFailsAfterExtracting(t *testing.T, bin, then string) string {
	t.Helper()
	wrapper := filepath.Join(t.TempDir(), "docker")
	script := fmt.Sprintf(`#!/bin/sh
if [ "$1" = cp ]; then %q "$@" || exit; %s; fi
exec %q "$@"
`, bin, then, bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper
}

// TestDockerWriteFileCopyFailure: a docker cp that fails or is cancelled after it extracted the
// staged file leaves nothing staged in the node, and nothing at the destination.
func TestDockerWriteFileCopyFailure(t *testing.T) {
	for name, then := range map[string]string{"fails": "exit 1", "cancelled": "exec sleep 30"} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			bin, log := fakeDocker(t, "kind-worker")
			d := Docker{Stage: root, Docker: cpFailsAfterExtracting(t, bin, then)}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			p := filepath.Join(root, "k.pem")
			if err := d.WriteFile(ctx, "kind-worker", p, []byte("k"), 0o600); err == nil {
				t.Fatal("WriteFile succeeded with a failing docker cp")
			}
			if err := noStaged(root); err != nil {
				t.Error(err)
			}
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s exists after a failed copy", p)
			}
			calls, _ := os.ReadFile(log)
			if !strings.Contains(string(calls), "exec kind-worker rm -f -- "+root+"/.keysync-plant-") {
				t.Errorf("docker calls:\n%s\nwant an rm of the staged file", calls)
			}
		})
	}
}
