package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keysync-dev/keysync/internal/atomicfile"
)

// HealthCheck reports nil once a process serves. It is polled until it succeeds, the process
// exits or the start timeout passes.
type HealthCheck func(ctx context.Context) error

// Process is one host process of a lab, modelled on controller-runtime envtest's process.State
// but detached: it outlives the command that started it (own session, output to LogFile) and
// is found again through PidFile, so `down` (or a second `up`) in another invocation can stop
// or reuse it.
type Process struct {
	// Name names the process in status lines and errors ("etcd", "crio").
	Name string
	// Path is the executable; Args its arguments (without argv[0]).
	Path string
	Args []string
	// Env is the complete environment; nil means the caller's.
	Env []string
	// Dir is the working directory; empty means the caller's.
	Dir string
	// LogFile receives stdout and stderr (appended, one header line per start).
	LogFile string
	// PidFile records the pid, the process start time (guarding against pid reuse) and the
	// Fingerprint.
	PidFile string
	// Health is polled every PollInterval after start; nil means started is enough.
	Health HealthCheck
	// StartTimeout bounds the wait for Health (default 60 s).
	StartTimeout time.Duration
	// StopTimeout bounds the wait after SIGTERM before SIGKILL (default 10 s).
	StopTimeout time.Duration
	// PollInterval is the health poll period (default 100 ms).
	PollInterval time.Duration
	// Binds, when set, are files the process sees in place of others (a lab's own /etc/hosts
	// and /etc/resolv.conf): it runs in a mount namespace of its own (private propagation, so
	// nothing leaks to the host) where each Source is bind-mounted over its Target before the
	// program starts. Labs use it to make public names resolve to their own servers for one
	// process only. Needs root and mount(8).
	Binds []Bind
	// Fingerprint identifies the configuration the process runs with (e.g. a hash of its
	// config files); it is recorded in the pid file and Ensure restarts a running process whose
	// fingerprint differs. Empty means a hash of Path, Args and Env.
	Fingerprint string
}

func (p *Process) fingerprint() string {
	if p.Fingerprint != "" {
		return p.Fingerprint
	}
	h := sha256.New()
	words := []string{p.Path}
	for _, b := range p.Binds {
		words = append(words, b.Source+"="+b.Target)
	}
	for _, s := range append(append(words, p.Args...), p.Env...) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Bind is one file of Process.Binds: Source seen at Target.
type Bind struct{ Source, Target string }

// bindScript bind-mounts its argument pairs up to "--", then execs the rest.
const bindScript = `while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 111; shift 2; done; shift; exec "$@"`

// ExitError says a process exited before it became healthy. It carries the exit code, the log
// file and the log's last lines from this start.
type ExitError struct {
	Name    string
	Code    int
	LogFile string
	Tail    string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s exited early with code %d (log %s); last lines:\n%s", e.Name, e.Code, e.LogFile, e.Tail)
}

// TimeoutError says a process did not become healthy in time; it was stopped.
type TimeoutError struct {
	Name    string
	Timeout time.Duration
	LogFile string
	Health  error
	Tail    string
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s not healthy after %s (last check: %v; log %s); last lines:\n%s",
		e.Name, e.Timeout, e.Health, e.LogFile, e.Tail)
}

func (e *TimeoutError) Unwrap() error { return e.Health }

const tailLines = 20

func (p *Process) startTimeout() time.Duration { return orDefault(p.StartTimeout, 60*time.Second) }
func (p *Process) stopTimeout() time.Duration  { return orDefault(p.StopTimeout, 10*time.Second) }
func (p *Process) pollInterval() time.Duration {
	return orDefault(p.PollInterval, 100*time.Millisecond)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Start starts the process and waits until Health passes. It races the health poll against
// the process exiting (→ *ExitError) and StartTimeout (→ *TimeoutError, the process is
// stopped). A cancelled ctx stops the process too. Start refuses when the pid file names a
// running process; see Running and Ensure.
func (p *Process) Start(ctx context.Context) error {
	if pid, ok := p.Running(); ok {
		return fmt.Errorf("failed to start %s: already running as pid %d (pid file %s)", p.Name, pid, p.PidFile)
	}
	logf, err := os.OpenFile(p.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("failed to open log file for %s: %w", p.Name, err)
	}
	defer logf.Close()
	st, err := logf.Stat()
	if err != nil {
		return fmt.Errorf("failed to stat log file %s: %w", p.LogFile, err)
	}
	logStart := st.Size()
	fmt.Fprintf(logf, "=== %s start %s: %s %s\n", time.Now().UTC().Format(time.RFC3339), p.Name, p.Path, strings.Join(p.Args, " "))

	cmd := exec.Command(p.Path, p.Args...)
	// Own session and process group: not killed with the starting terminal, stoppable as a group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if len(p.Binds) > 0 {
		// sh binds the files and execs the program: the pid (and its start time) stay the
		// program's. Go makes the new mount namespace's propagation private itself.
		args := []string{"-c", bindScript, "keysync-binds"}
		for _, b := range p.Binds {
			args = append(args, b.Source, b.Target)
		}
		cmd = exec.Command("/bin/sh", append(append(args, "--", p.Path), p.Args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Unshareflags: syscall.CLONE_NEWNS}
	}
	cmd.Env, cmd.Dir = p.Env, p.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start %s (log %s): %w", p.Name, p.LogFile, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan int, 1)
	go func() {
		_ = cmd.Wait()
		exited <- cmd.ProcessState.ExitCode()
	}()
	tail := func() string { return logTail(p.LogFile, logStart, tailLines) }
	if err := p.writePidFile(pid); err != nil {
		// A child that exits at once is reaped before its start time can be read: report how
		// it exited, not the missing /proc entry.
		select {
		case code := <-exited:
			return &ExitError{Name: p.Name, Code: code, LogFile: p.LogFile, Tail: tail()}
		case <-time.After(time.Second):
		}
		p.kill(pid, exited)
		return err
	}

	deadline := time.NewTimer(p.startTimeout())
	defer deadline.Stop()
	tick := time.NewTicker(p.pollInterval())
	defer tick.Stop()
	var healthErr error = errors.New("not checked yet")
	for {
		if p.Health == nil {
			healthErr = nil
		} else {
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			healthErr = p.Health(hctx)
			cancel()
		}
		if healthErr == nil {
			// The process may have died while the check ran (a port answered by someone else).
			select {
			case code := <-exited:
				os.Remove(p.PidFile)
				return &ExitError{Name: p.Name, Code: code, LogFile: p.LogFile, Tail: tail()}
			default:
			}
			return nil
		}
		select {
		case code := <-exited:
			os.Remove(p.PidFile)
			return &ExitError{Name: p.Name, Code: code, LogFile: p.LogFile, Tail: tail()}
		case <-deadline.C:
			p.kill(pid, exited)
			return &TimeoutError{Name: p.Name, Timeout: p.startTimeout(), LogFile: p.LogFile, Health: healthErr, Tail: tail()}
		case <-ctx.Done():
			p.kill(pid, exited)
			return fmt.Errorf("failed to start %s: %w", p.Name, ctx.Err())
		case <-tick.C:
		}
	}
}

// kill stops a child this invocation started and reaps it.
func (p *Process) kill(pid int, exited <-chan int) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(p.stopTimeout()):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	os.Remove(p.PidFile)
}

// Ensure reuses the process when its pid file names a running one with the same Fingerprint
// that passes Health, and starts it otherwise (stopping a running but unhealthy or differently
// configured one first). It reports whether it reused.
func (p *Process) Ensure(ctx context.Context) (reused bool, err error) {
	if _, ok := p.Running(); ok {
		// A running process of the same inputs is kept if it is healthy now or becomes so
		// within reuseGrace: a health check that fails for a moment (a loaded machine, a
		// dependency's hiccup) must not restart what runs, and everything that depends on it.
		if p.runningFingerprint() == p.fingerprint() && p.healthyWithin(ctx, reuseGrace) {
			return true, nil
		}
		if err := p.Stop(ctx); err != nil {
			return false, err
		}
	}
	return false, p.Start(ctx)
}

// reuseGrace is how long Ensure waits for a running, unchanged process to pass its health
// check before it restarts it.
const reuseGrace = 15 * time.Second

// healthyWithin polls Check until it passes or d has passed.
func (p *Process) healthyWithin(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		c := p.Check(ctx)
		if c.Up {
			return true
		}
		if _, running := p.Running(); !running || time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(p.pollInterval()):
		}
	}
}

// Check reports the process as a lab Component: up when its pid file names a running process
// and Health (if any) passes now; Detail names the pid, or says why it is down.
func (p *Process) Check(ctx context.Context) Component {
	pid, ok := p.Running()
	if !ok {
		return Component{Name: p.Name, Detail: "not running"}
	}
	if p.Health != nil {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.Health(hctx)
		cancel()
		if err != nil {
			return Component{Name: p.Name, Detail: fmt.Sprintf("pid %d, unhealthy: %v", pid, err)}
		}
	}
	return Component{Name: p.Name, Up: true, Detail: fmt.Sprintf("pid %d", pid)}
}

// Running reports the pid of the process named by PidFile if it is still the process that was
// started (same pid and start time) and not a zombie.
func (p *Process) Running() (int, bool) {
	data, err := os.ReadFile(p.PidFile)
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return 0, false
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil || pid <= 0 {
		return 0, false
	}
	start, state, err := procStat(pid)
	if err != nil || state == "Z" || state == "X" || start != fields[1] {
		return 0, false
	}
	return pid, true
}

// runningFingerprint is the fingerprint recorded in the pid file.
func (p *Process) runningFingerprint() string {
	data, err := os.ReadFile(p.PidFile)
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(data)); len(f) >= 3 {
		return f[2]
	}
	return ""
}

// Stop stops the process named by PidFile: SIGTERM to its process group, then SIGKILL after
// StopTimeout. It removes the pid file; a process that is not running is not an error.
func (p *Process) Stop(ctx context.Context) error {
	pid, ok := p.Running()
	if !ok {
		if err := os.Remove(p.PidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("failed to remove pid file of %s: %w", p.Name, err)
		}
		return nil
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	if !p.waitGone(ctx, pid, p.stopTimeout()) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		if !p.waitGone(ctx, pid, 5*time.Second) {
			return fmt.Errorf("failed to stop %s: pid %d still running after SIGKILL", p.Name, pid)
		}
	}
	if err := os.Remove(p.PidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to remove pid file of %s: %w", p.Name, err)
	}
	return nil
}

func (p *Process) waitGone(ctx context.Context, pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if _, ok := p.Running(); !ok {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *Process) writePidFile(pid int) error {
	start, _, err := procStat(pid)
	if err != nil {
		return fmt.Errorf("failed to read start time of %s: %w", p.Name, err)
	}
	if err := atomicfile.Write(p.PidFile, []byte(fmt.Sprintf("%d %s %s\n", pid, start, p.fingerprint())), 0o644); err != nil {
		return fmt.Errorf("failed to write pid file of %s: %w", p.Name, err)
	}
	return nil
}

// procStat returns a process's start time (clock ticks since boot) and state from
// /proc/<pid>/stat.
func procStat(pid int) (start, state string, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", "", err
	}
	// The command name (field 2) may hold spaces and parentheses; fields resume after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", "", fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return "", "", fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return f[19], f[0], nil
}

// logTail returns the last n lines of path from offset on.
func logTail(path string, offset int64, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	if offset > int64(len(data)) {
		offset = 0
	}
	return LastLines(data[offset:], n)
}

// LastLines returns the last n lines of data, without a trailing newline.
func LastLines(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
