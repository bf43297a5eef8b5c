// Package nodelab is keysync's Docker-free node lab: one "node" made of host processes on
// loopback under one work dir — a registry, etcd + kube-apiserver, a seeded mockkp, CRI-O (its
// decryption_keys_path at <work>/keys) and the synchronizer writing <work>/keys/synced — with
// the fixtures pushed, a kubeconfig and a lab env file (lab.Env) for the suites.
//
// Up starts a supervisor (`keysync lab node serve`, detached, pid file run/lab.pid) that brings
// the lab up as ordered steps (a status line with timing each) and keeps the registry and the
// control plane as its children; CRI-O, mockkp and the synchronizer are detached processes
// with pid files, so Down finds them even if the supervisor died. A second Up reuses a running
// lab, and otherwise reuses everything on disk (storage, certificates, pushed fixtures, ports).
// Down stops every process by its pid file, removes CRI-O's pods and unmounts what CRI-O
// mounted under the work dir.
//
// The lab needs root (CRI-O), the binaries of hack/build-crio.sh and hack/build-k8s.sh, and the
// Debian packages of hack/packages.txt (conmon, runc, docker-registry, catatonit, CNI plugins).
package nodelab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/lab"
)

// Fixed names of the node lab.
const (
	// NodeName is the lab's only node, as the synchronizer reports it.
	NodeName = "node-lab"
	// SyncSubdir is the synchronizer's directory under the keys root.
	SyncSubdir = "synced"
	// Namespace is the namespace the synchronizer watches.
	Namespace = "image-key-synchronizer"
	// supervisorName names the supervisor's pid and log files.
	supervisorName = "lab"
)

// Options configure a node lab. Paths must be absolute (the CLI makes them so).
type Options struct {
	// WorkDir holds everything the lab writes and mounts (default _out/node-lab).
	WorkDir string
	// EnvFile is where the lab description goes (default _out/lab.env).
	EnvFile string
	// BinDir holds keysync's binaries: mockkp, keysync-syncer, keysync-runtime-wrapper.
	BinDir string
	// CRIOBinDir holds crio, pinns and crictl (hack/build-crio.sh).
	CRIOBinDir string
	// K8sBinDir holds kube-apiserver and etcd (hack/build-k8s.sh kube-apiserver).
	K8sBinDir string
	// Self is the keysync binary (supervisor, fixtures push); empty means os.Executable.
	Self string
	// SourceDir is a directory inside the keysync checkout (the fixtures' marker program is
	// built from it); empty means the working directory.
	SourceDir string
	// Out receives the status lines.
	Out io.Writer
	// Logger receives debug detail; nil discards it.
	Logger *slog.Logger
	// StartTimeout bounds the whole bring-up seen from Up (default 10 min: a cold fixtures
	// build and image pulls are slow on 2 cores).
	StartTimeout time.Duration
}

func (o Options) validate() error {
	var errs []error
	for name, p := range map[string]string{"work dir": o.WorkDir, "env file": o.EnvFile, "bin dir": o.BinDir,
		"CRI-O bin dir": o.CRIOBinDir, "Kubernetes bin dir": o.K8sBinDir} {
		if p == "" {
			errs = append(errs, fmt.Errorf("%s is not set", name))
		} else if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("%s %q is not absolute", name, p))
		}
	}
	return errors.Join(errs...)
}

func (o Options) out() io.Writer {
	if o.Out == nil {
		return io.Discard
	}
	return o.Out
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o Options) self() (string, error) {
	if o.Self != "" {
		return o.Self, nil
	}
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("failed to find the keysync binary: %w", err)
	}
	return p, nil
}

// serveArgs is the supervisor's command line.
func (o Options) serveArgs() []string {
	return []string{"lab", "node", "serve", "--work-dir", o.WorkDir, "--env-file", o.EnvFile, "--bin-dir", o.BinDir,
		"--crio-bin-dir", o.CRIOBinDir, "--k8s-bin-dir", o.K8sBinDir, "--source-dir", o.sourceDir()}
}

func (o Options) sourceDir() string {
	if o.SourceDir != "" {
		return o.SourceDir
	}
	if wd, err := os.Getwd(); err == nil {
		return wd
	}
	return o.WorkDir
}

func (o Options) supervisor() (*lab.Process, error) {
	self, err := o.self()
	if err != nil {
		return nil, err
	}
	l := Layout{Dir: o.WorkDir}
	timeout := o.StartTimeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	return &lab.Process{
		Name: "lab supervisor", Path: self, Args: o.serveArgs(), Dir: o.sourceDir(),
		LogFile: l.Log(supervisorName), PidFile: l.PidFile(supervisorName),
		StartTimeout: timeout, StopTimeout: 3 * time.Minute, PollInterval: 200 * time.Millisecond,
	}, nil
}

// Up brings the node lab up (or finds it up) and returns its description, also written to
// EnvFile. Status lines go to Out; on failure the error names the failed step and its log.
func Up(ctx context.Context, opts Options) (lab.Env, error) {
	if err := opts.validate(); err != nil {
		return lab.Env{}, fmt.Errorf("invalid node lab options: %w", err)
	}
	l := Layout{Dir: opts.WorkDir}
	for _, d := range []string{l.LogDir(), l.RunDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return lab.Env{}, fmt.Errorf("failed to create %s: %w", d, err)
		}
	}
	sup, err := opts.supervisor()
	if err != nil {
		return lab.Env{}, err
	}
	out := opts.out()
	if pid, ok := sup.Running(); ok {
		if _, err := os.Stat(l.ReadyFile()); err == nil {
			env, err := lab.LoadEnv(opts.EnvFile)
			if err == nil {
				fmt.Fprintf(out, "✓ node lab already up (supervisor pid %d, reused); env file %s\n", pid, opts.EnvFile)
				return env, nil
			}
		}
		// Up but not ready (still starting, or its env file is gone): start over.
		fmt.Fprintf(out, "• restarting the lab supervisor (pid %d): not ready\n", pid)
		if err := sup.Stop(ctx); err != nil {
			return lab.Env{}, err
		}
	}
	// Stale ready marker from a supervisor that died.
	_ = os.Remove(l.ReadyFile())

	f := &follower{path: sup.LogFile, out: out}
	if err := f.skipToEnd(); err != nil {
		return lab.Env{}, err
	}
	sup.Health = func(context.Context) error {
		f.copy()
		if _, err := os.Stat(l.ReadyFile()); err != nil {
			return errors.New("lab not ready yet")
		}
		return nil
	}
	err = sup.Start(ctx)
	f.copy()
	if err != nil {
		var ee *lab.ExitError
		if errors.As(err, &ee) {
			// The status lines (with the failed step and its log) were copied already.
			return lab.Env{}, fmt.Errorf("failed to bring the node lab up (supervisor exit code %d, log %s)", ee.Code, ee.LogFile)
		}
		return lab.Env{}, fmt.Errorf("failed to bring the node lab up: %w", err)
	}
	env, err := lab.LoadEnv(opts.EnvFile)
	if err != nil {
		return lab.Env{}, fmt.Errorf("node lab up but its env file is unreadable: %w", err)
	}
	return env, nil
}

// Down stops the node lab: the supervisor (which tears down in order), then every process
// still named by a pid file, then unmounts what is left mounted under the work dir. It is
// safe to run on a lab that is not up.
func Down(ctx context.Context, opts Options) error {
	if opts.WorkDir == "" || !filepath.IsAbs(opts.WorkDir) {
		return fmt.Errorf("invalid node lab options: work dir %q must be absolute", opts.WorkDir)
	}
	l := Layout{Dir: opts.WorkDir}
	out := opts.out()
	sup, err := opts.supervisor()
	if err != nil {
		return err
	}
	steps := []lab.Step{{Name: "Stopping the lab supervisor", Run: func(ctx context.Context) (string, error) {
		pid, ok := sup.Running()
		if !ok {
			return "not running", sup.Stop(ctx)
		}
		// Show the supervisor's own tear-down lines, indented under this step.
		f := &follower{path: sup.LogFile, out: &indent{w: out}}
		_ = f.skipToEnd()
		err := sup.Stop(ctx)
		f.copy()
		return fmt.Sprintf("pid %d", pid), err
	}}}
	_, supErr := lab.RunSteps(ctx, out, true, steps)
	// Whatever the supervisor did not stop (it died, or was killed): by pid file, listed once
	// the supervisor is gone.
	_, err = lab.RunSteps(ctx, out, true, teardownSteps(l, procNames()))
	if err := errors.Join(supErr, err); err != nil {
		return fmt.Errorf("failed to bring the node lab down: %w", err)
	}
	_ = os.Remove(l.ReadyFile())
	return nil
}

// procNames are the detached processes, in start order.
func procNames() []string { return []string{"mockkp", "crio", "syncer"} }

// teardownSteps stops the detached processes that their pid files name as running (reverse
// order), removing CRI-O's pods first, and unmounts whatever is mounted under the work dir.
func teardownSteps(l Layout, names []string) []lab.Step {
	var steps []lab.Step
	for i := len(names) - 1; i >= 0; i-- {
		name := names[i]
		p := &lab.Process{Name: name, PidFile: l.PidFile(name), StopTimeout: 30 * time.Second}
		if _, ok := p.Running(); !ok {
			// Not running: only a stale pid file to drop, nothing to show.
			_ = p.Stop(context.Background())
			continue
		}
		if name == "crio" {
			steps = append(steps, lab.Step{Name: "Removing CRI-O pods", Run: func(ctx context.Context) (string, error) {
				if _, ok := p.Running(); !ok {
					return "CRI-O not running", nil
				}
				n, err := removeAllPods(ctx, l.CRISocket())
				return fmt.Sprintf("%d pods", n), err
			}})
		}
		steps = append(steps, lab.Step{Name: "Stopping " + name, Run: func(ctx context.Context) (string, error) {
			pid, ok := p.Running()
			if !ok {
				return "not running", p.Stop(ctx)
			}
			return fmt.Sprintf("pid %d", pid), p.Stop(ctx)
		}})
	}
	// Containers whose CRI-O died (SIGKILL) keep running under conmon: kill them through runc's
	// state in the lab's runtime root.
	if ids := leftoverContainers(l); len(ids) > 0 {
		steps = append(steps, lab.Step{Name: "Killing leftover containers", Run: func(ctx context.Context) (string, error) {
			n, err := killContainers(ctx, l)
			return fmt.Sprintf("%d containers", n), err
		}})
	}
	steps = append(steps, lab.Step{Name: "Unmounting under the work dir", Run: func(ctx context.Context) (string, error) {
		n, err := unmountUnder(l.Dir)
		return fmt.Sprintf("%d mounts", n), err
	}})
	return steps
}

// Status describes the lab's processes and files.
func Status(ctx context.Context, opts Options, out io.Writer) error {
	l := Layout{Dir: opts.WorkDir}
	sup, err := opts.supervisor()
	if err != nil {
		return err
	}
	ready := "not ready"
	if _, err := os.Stat(l.ReadyFile()); err == nil {
		ready = "ready"
	}
	line := func(name string, p *lab.Process) {
		if pid, ok := p.Running(); ok {
			fmt.Fprintf(out, "  %-16s running (pid %d)\n", name, pid)
		} else {
			fmt.Fprintf(out, "  %-16s stopped\n", name)
		}
	}
	fmt.Fprintf(out, "node lab in %s: %s\n", opts.WorkDir, ready)
	line("supervisor", sup)
	for _, n := range procNames() {
		line(n, &lab.Process{Name: n, PidFile: l.PidFile(n)})
	}
	fmt.Fprintf(out, "  logs             %s\n  env file         %s\n", l.LogDir(), opts.EnvFile)
	if ready != "ready" {
		return errors.New("node lab is not up (make node-lab-up)")
	}
	return nil
}

// follower copies complete new lines of a growing file to out.
type follower struct {
	path   string
	out    io.Writer
	offset int64
	// failed is set once an ERROR line was seen: every later line belongs to the error.
	failed bool
}

func (f *follower) skipToEnd() error {
	st, err := os.Stat(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to stat %s: %w", f.path, err)
	}
	f.offset = st.Size()
	return nil
}

func (f *follower) copy() {
	file, err := os.Open(f.path)
	if err != nil {
		return
	}
	defer file.Close()
	if _, err := file.Seek(f.offset, io.SeekStart); err != nil {
		return
	}
	r := bufio.NewReader(file)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return // a partial line is read again next time
		}
		f.offset += int64(len(line))
		// The supervisor's log holds the status lines and its slog output; show status lines.
		if strings.HasPrefix(line, "ERROR") {
			f.failed = true
		}
		if f.failed || isStatusLine(line) {
			io.WriteString(f.out, line)
		}
	}
}

func isStatusLine(line string) bool {
	for _, p := range []string{"• ", "✓ ", "✗ ", "total ", "  "} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// indent prefixes every write (one status line) with two spaces.
type indent struct{ w io.Writer }

func (i *indent) Write(p []byte) (int, error) {
	if _, err := io.WriteString(i.w, "  "); err != nil {
		return 0, err
	}
	return i.w.Write(p)
}
