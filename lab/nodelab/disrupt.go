package nodelab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keysync-dev/keysync/lab"
)

var _ lab.Disrupter = (*Lab)(nil)

// KillSyncer implements lab.Disrupter: SIGKILL to the synchronizer process, then Up, which
// starts it again (and waits for its /readyz).
func (n *Lab) KillSyncer(ctx context.Context, out io.Writer) error {
	r, err := n.runner()
	if err != nil {
		return err
	}
	p := r.process(componentNamed("syncer"))
	pid, ok := p.Running()
	if !ok {
		return errors.New("failed to kill the synchronizer: it is not running (keysync lab up --kind node starts it)")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("failed to kill the synchronizer (pid %d): %w", pid, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := p.Running(); !ok {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("failed to kill the synchronizer: pid %d still runs 10s after SIGKILL", pid)
		}
	}
	fmt.Fprintf(out, "killed the synchronizer (pid %d) with SIGKILL\n", pid)
	_, err = n.Up(ctx, out)
	return err
}

// RestartAPIServer implements lab.Disrupter: kube-apiserver stopped (SIGTERM, SIGKILL after
// 5 s: it drains its watches for longer than a restart needs), then Up, which starts it again
// (and waits for its /readyz).
func (n *Lab) RestartAPIServer(ctx context.Context, out io.Writer) error {
	r, err := n.runner()
	if err != nil {
		return err
	}
	p := r.process(componentNamed("kube-apiserver"))
	p.StopTimeout = 5 * time.Second
	if err := p.Stop(ctx); err != nil {
		return fmt.Errorf("failed to stop kube-apiserver: %w", err)
	}
	fmt.Fprintln(out, "stopped kube-apiserver")
	_, err = n.Up(ctx, out)
	return err
}

// disruptCommands are the env file's KILL_SYNCER_CMD and RESTART_APISERVER_CMD: the keysync
// CLI beside the lab's binaries with the flags this lab was brought up with. Empty when that
// CLI is missing or a path holds a space (the commands are split on spaces).
func (n *Lab) disruptCommands() (kill, restart string) {
	keysync := filepath.Join(n.opts.BinDir, "keysync")
	if _, err := os.Stat(keysync); err != nil {
		return "", ""
	}
	parts := []string{"--kind", lab.KindNode, "--work-dir", n.opts.WorkDir, "--lab-env", n.opts.EnvFile,
		"--bin-dir", n.opts.BinDir, "--crio-bin-dir", n.opts.CRIOBinDir, "--k8s-bin-dir", n.opts.K8sBinDir}
	if n.opts.SourceDir != "" {
		parts = append(parts, "--source-dir", n.opts.SourceDir)
	}
	for _, p := range append([]string{keysync}, parts...) {
		if strings.ContainsAny(p, " \t") {
			return "", ""
		}
	}
	flags := strings.Join(parts, " ")
	return keysync + " lab disrupt kill-syncer " + flags, keysync + " lab disrupt restart-apiserver " + flags
}
