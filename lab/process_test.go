package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func fileHealth(path string) HealthCheck {
	return func(context.Context) error {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("not ready: %w", err)
		}
		return nil
	}
}

func newProc(t *testing.T, script string, health func(dir string) HealthCheck) (*Process, string) {
	t.Helper()
	dir := t.TempDir()
	p := &Process{
		Name: "test", Path: "/bin/sh", Args: []string{"-c", script}, Dir: dir,
		LogFile: filepath.Join(dir, "test.log"), PidFile: filepath.Join(dir, "test.pid"),
		StartTimeout: 5 * time.Second, StopTimeout: 2 * time.Second, PollInterval: 20 * time.Millisecond,
	}
	if health != nil {
		p.Health = health(dir)
	}
	return p, dir
}

func ready(dir string) HealthCheck { return fileHealth(filepath.Join(dir, "ready")) }

func TestProcessStart(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		health   func(string) HealthCheck
		timeout  time.Duration
		check    func(t *testing.T, err error)
		wantLive bool
	}{
		{name: "healthy", script: "echo hello; touch ready; exec sleep 60", health: ready, wantLive: true,
			check: func(t *testing.T, err error) {
				if err != nil {
					t.Fatal(err)
				}
			}},
		{name: "no health check", script: "exec sleep 60", wantLive: true, check: func(t *testing.T, err error) {
			if err != nil {
				t.Fatal(err)
			}
		}},
		{name: "early exit reports code and log tail", script: "echo first; echo boom >&2; exit 3", health: ready,
			check: func(t *testing.T, err error) {
				var ee *ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("err = %v, want *ExitError", err)
				}
				if ee.Code != 3 || !strings.Contains(ee.Tail, "boom") || !strings.Contains(ee.Tail, "first") {
					t.Fatalf("got code %d tail %q", ee.Code, ee.Tail)
				}
				if !strings.Contains(err.Error(), "test.log") {
					t.Fatalf("error does not name the log: %v", err)
				}
			}},
		{name: "timeout stops the process", script: "echo waiting; exec sleep 60", health: ready, timeout: 300 * time.Millisecond,
			check: func(t *testing.T, err error) {
				var te *TimeoutError
				if !errors.As(err, &te) {
					t.Fatalf("err = %v, want *TimeoutError", err)
				}
				if !strings.Contains(te.Tail, "waiting") || !strings.Contains(err.Error(), "not ready") {
					t.Fatalf("error lacks tail or health error: %v", err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newProc(t, tt.script, tt.health)
			if tt.timeout > 0 {
				p.StartTimeout = tt.timeout
			}
			err := p.Start(context.Background())
			tt.check(t, err)
			pid, live := p.Running()
			if live != tt.wantLive {
				t.Fatalf("running = %v, want %v", live, tt.wantLive)
			}
			if !live {
				if _, err := os.Stat(p.PidFile); !os.IsNotExist(err) {
					t.Fatalf("pid file left behind: %v", err)
				}
				return
			}
			if err := p.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
				t.Fatalf("second Start: err = %v, want already running", err)
			}
			if err := p.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			if syscall.Kill(pid, 0) == nil {
				if _, ok := p.Running(); ok {
					t.Fatalf("pid %d still running after Stop", pid)
				}
			}
			if _, err := os.Stat(p.PidFile); !os.IsNotExist(err) {
				t.Fatalf("pid file left behind: %v", err)
			}
		})
	}
}

func TestProcessStopEscalatesToKill(t *testing.T) {
	p, _ := newProc(t, `trap "" TERM; touch ready; while :; do sleep 0.05; done`, ready)
	p.StopTimeout = 200 * time.Millisecond
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Running(); ok {
		t.Fatal("still running")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("stopped after %v: SIGTERM was not ignored, so the test proves nothing", d)
	}
}

func TestProcessEnsure(t *testing.T) {
	p, dir := newProc(t, "touch ready; exec sleep 60", ready)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	reused, err := p.Ensure(context.Background())
	if err != nil || reused {
		t.Fatalf("first Ensure: reused=%v err=%v", reused, err)
	}
	pid1, _ := p.Running()
	reused, err = p.Ensure(context.Background())
	if err != nil || !reused {
		t.Fatalf("second Ensure: reused=%v err=%v", reused, err)
	}
	// Unhealthy but running: Ensure replaces it.
	if err := os.Remove(filepath.Join(dir, "ready")); err != nil {
		t.Fatal(err)
	}
	reused, err = p.Ensure(context.Background())
	if err != nil || reused {
		t.Fatalf("third Ensure: reused=%v err=%v", reused, err)
	}
	pid3, ok := p.Running()
	if !ok || pid3 == pid1 {
		t.Fatalf("not restarted: pid %d → %d (running %v)", pid1, pid3, ok)
	}
	// Healthy but configured differently: Ensure replaces it.
	p.Fingerprint = "config-v2"
	reused, err = p.Ensure(context.Background())
	if err != nil || reused {
		t.Fatalf("fourth Ensure: reused=%v err=%v", reused, err)
	}
	pid4, ok := p.Running()
	if !ok || pid4 == pid3 {
		t.Fatalf("not restarted on a new fingerprint: pid %d → %d (running %v)", pid3, pid4, ok)
	}
	if reused, err = p.Ensure(context.Background()); err != nil || !reused {
		t.Fatalf("fifth Ensure: reused=%v err=%v", reused, err)
	}
}

func TestProcessRunningIgnoresStalePidFiles(t *testing.T) {
	self := os.Getpid()
	selfStart, _, err := procStat(self)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content string
		want    bool
	}{
		{name: "this process", content: fmt.Sprintf("%d %s\n", self, selfStart), want: true},
		{name: "reused pid (other start time)", content: fmt.Sprintf("%d 1\n", self)},
		{name: "pid only", content: fmt.Sprintf("%d\n", self)},
		{name: "no such process", content: "999999999 1\n"},
		{name: "garbage", content: "abc def\n"},
		{name: "empty", content: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Process{Name: "x", PidFile: filepath.Join(t.TempDir(), "x.pid")}
			if err := os.WriteFile(p.PidFile, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, got := p.Running(); got != tt.want {
				t.Fatalf("running = %v, want %v", got, tt.want)
			}
			if !tt.want {
				if err := p.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(p.PidFile); !os.IsNotExist(err) {
					t.Fatal("Stop kept a stale pid file")
				}
			}
		})
	}
}

func TestRunSteps(t *testing.T) {
	ok := func(note string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return note, nil }
	}
	fail := func(context.Context) (string, error) { return "", errors.New("see /w/logs/crio.log") }
	tests := []struct {
		name      string
		keepGoing bool
		steps     []Step
		wantRan   []string
		wantLines []string
		wantErr   string
	}{
		{name: "all pass", steps: []Step{{"one", ok("")}, {"two", ok("reused")}}, wantRan: []string{"one", "two"},
			wantLines: []string{"• one ...", "✓ one ", "✓ two (reused) ", "total "}},
		{name: "stops at the first failure", steps: []Step{{"one", ok("")}, {"Starting CRI-O", fail}, {"three", ok("")}},
			wantRan: []string{"one", "Starting CRI-O"}, wantLines: []string{"✗ Starting CRI-O "},
			wantErr: `step "Starting CRI-O" failed: see /w/logs/crio.log`},
		{name: "keep going on tear-down", keepGoing: true, steps: []Step{{"a", fail}, {"b", ok("")}, {"c", fail}},
			wantRan: []string{"a", "b", "c"}, wantLines: []string{"✗ a ", "✓ b ", "✗ c "}, wantErr: `step "c" failed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := RunSteps(context.Background(), &out, tt.keepGoing, tt.steps)
			var ran []string
			for _, r := range res {
				ran = append(ran, r.Name)
			}
			if strings.Join(ran, ",") != strings.Join(tt.wantRan, ",") {
				t.Fatalf("ran %v, want %v", ran, tt.wantRan)
			}
			for _, l := range tt.wantLines {
				if !strings.Contains(out.String(), l) {
					t.Errorf("output lacks %q:\n%s", l, out.String())
				}
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			var se *StepError
			if !errors.As(err, &se) {
				t.Fatalf("err %T is not a *StepError", err)
			}
		})
	}
}

func TestProcessCheck(t *testing.T) {
	p, dir := newProc(t, "touch ready; exec sleep 60", ready)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	if c := p.Check(context.Background()); c.Up || c.Name != "test" || c.Detail != "not running" {
		t.Fatalf("before start: %+v", c)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	pid, _ := p.Running()
	if c := p.Check(context.Background()); !c.Up || !strings.Contains(c.Detail, "pid ") {
		t.Fatalf("running and healthy: %+v", c)
	}
	if err := os.Remove(filepath.Join(dir, "ready")); err != nil {
		t.Fatal(err)
	}
	if c := p.Check(context.Background()); c.Up || !strings.Contains(c.Detail, "unhealthy") {
		t.Fatalf("running, unhealthy: %+v (pid %d)", c, pid)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := p.Check(context.Background()); c.Up || c.Detail != "not running" {
		t.Fatalf("after stop: %+v", c)
	}
}

// TestProcessBinds: a process with Binds sees its files as /etc/hosts and /etc/resolv.conf,
// the host does not, and the pid file names the program itself (sh execs it).
func TestProcessBinds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (a mount namespace): run it as make test does")
	}
	p, dir := newProc(t, "cat /etc/hosts /etc/resolv.conf > seen; touch ready; exec sleep 60", ready)
	p.Binds = []Bind{{Source: filepath.Join(dir, "hosts"), Target: "/etc/hosts"}, {Source: filepath.Join(dir, "resolv"), Target: "/etc/resolv.conf"}}
	if err := os.WriteFile(p.Binds[0].Source, []byte("127.9.9.9 iam.example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Binds[1].Source, []byte("nameserver 127.9.9.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	seen, err := os.ReadFile(filepath.Join(dir, "seen"))
	if err != nil || string(seen) != "127.9.9.9 iam.example.test\nnameserver 127.9.9.9\n" {
		t.Errorf("the process saw /etc/hosts + /etc/resolv.conf = %q (%v), want the Binds' files", seen, err)
	}
	host, err := os.ReadFile("/etc/hosts")
	if err != nil || bytes.Contains(host, []byte("iam.example.test")) {
		t.Errorf("the host's /etc/hosts changed (%v): %q", err, host)
	}
	pid, ok := p.Running()
	if !ok {
		t.Fatal("not running")
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.HasPrefix(cmdline, []byte("sleep\x00")) {
		t.Errorf("pid %d runs %q (%v), want the program (sleep)", pid, cmdline, err)
	}
	// A hosts file that cannot be mounted: the start fails and says why.
	q, qdir := newProc(t, "touch ready; exec sleep 60", ready)
	q.Binds = []Bind{{Source: filepath.Join(qdir, "missing"), Target: "/etc/hosts"}}
	if err := q.Start(t.Context()); err == nil {
		_ = q.Stop(context.Background())
		t.Fatal("Start with a missing bind source succeeded")
	} else if !strings.Contains(err.Error(), "exited early") {
		t.Errorf("Start with a missing bind source: %v, want an early exit with the log's tail", err)
	}
}
