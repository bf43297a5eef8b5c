package nodelab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// runcRoot is the runtime root CRI-O's runc handler uses (runtime_root in the drop-in).
func (l Layout) runcRoot() string { return filepath.Join(l.CRIORunDir(), "runc") }

// leftoverContainers lists the containers runc still has state for in the lab's runtime root.
func leftoverContainers(l Layout) []string {
	entries, err := os.ReadDir(l.runcRoot())
	if err != nil {
		return nil
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// killContainers kills and deletes every container in the lab's runtime root with runc (their
// conmon monitors exit with them). Used when CRI-O is gone and cannot remove its pods.
func killContainers(ctx context.Context, l Layout) (int, error) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		return 0, fmt.Errorf("failed to find runc: %w", err)
	}
	var errs []error
	n := 0
	for _, id := range leftoverContainers(l) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		// kill may fail for a container that already stopped; delete --force handles both.
		_ = exec.CommandContext(cctx, runc, "--root", l.runcRoot(), "kill", id, "KILL").Run()
		out, err := exec.CommandContext(cctx, runc, "--root", l.runcRoot(), "delete", "--force", id).CombinedOutput()
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to delete container %s: %w: %s", id, err, out))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
