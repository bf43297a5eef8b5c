// Package registry runs a real OCI distribution registry process on loopback: Debian's
// docker-registry binary (distribution 2.8.x), with its storage in a directory and a free port.
// The fixtures tests push to it and the node lab serves images from it.
package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultBinary is where Debian's docker-registry package installs the registry.
const DefaultBinary = "/usr/bin/docker-registry"

// ErrBinaryMissing means the registry binary is not installed; `make deps` installs it.
var ErrBinaryMissing = errors.New("registry binary not found (install Debian's docker-registry package: make deps)")

// Options configure Start. The zero value runs DefaultBinary on 127.0.0.1 with a free port and
// storage in a temporary directory removed by Stop.
type Options struct {
	// Binary is the registry executable; empty means $KEYSYNC_REGISTRY_BIN, then DefaultBinary.
	Binary string
	// Dir holds the registry's storage and config; empty means a new temporary directory that
	// Stop removes. A given Dir is kept, so a registry restarted on it serves the same images.
	Dir string
	// Addr is host:port to listen on; empty means 127.0.0.1 and a free port.
	Addr string
	// Htpasswd is an htpasswd file (bcrypt entries); when set, the registry requires basic
	// authentication (realm "keysync"). Empty means no authentication.
	Htpasswd string
	// StartTimeout bounds the wait for /v2/ to answer; zero means 15 s.
	StartTimeout time.Duration
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Registry is one running registry process.
type Registry struct {
	addr    string
	dir     string
	ownsDir bool
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	output  *tailBuffer
	log     *slog.Logger

	stopOnce sync.Once
	stopErr  error
}

// Start launches the registry and returns once GET /v2/ answers (200, or 401 with Htpasswd). If the process exits
// first, the error carries its exit status and the tail of its output. When Addr is empty and
// the chosen port is taken in the meantime, Start retries with another port.
func Start(ctx context.Context, opts Options) (*Registry, error) {
	bin, err := findBinary(opts.Binary)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	dir, ownsDir := opts.Dir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "keysync-registry-"); err != nil {
			return nil, fmt.Errorf("failed to create registry directory: %w", err)
		}
		ownsDir = true
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("failed to create registry directory: %w", err)
	}
	attempts := 1
	if opts.Addr == "" {
		attempts = 3
	}
	for i := 0; ; i++ {
		addr := opts.Addr
		if addr == "" {
			if addr, err = freeAddr(); err != nil {
				break
			}
		}
		var r *Registry
		r, err = start(ctx, bin, dir, addr, opts.Htpasswd, timeout, log)
		if err == nil {
			r.ownsDir = ownsDir
			return r, nil
		}
		if i+1 >= attempts || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		log.Debug("registry port taken, retrying", "addr", addr)
	}
	if ownsDir {
		_ = os.RemoveAll(dir)
	}
	return nil, err
}

func findBinary(bin string) (string, error) {
	if bin == "" {
		bin = os.Getenv("KEYSYNC_REGISTRY_BIN")
	}
	if bin == "" {
		bin = DefaultBinary
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("failed to find %s: %w", bin, ErrBinaryMissing)
	}
	return path, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("failed to find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Config is distribution 2.8's configuration: filesystem storage under storage, deletes
// allowed, basic authentication when htpasswd names a file, plain HTTP on addr, quiet logs.
// The node lab runs the registry as its own process with it.
func Config(storage, addr, htpasswd string) string {
	auth := ""
	if htpasswd != "" {
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: keysync\n    path: %q\n", htpasswd)
	}
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  headers:
    X-Content-Type-Options: [nosniff]
%s`, storage, addr, auth)
}

func start(ctx context.Context, bin, dir, addr, htpasswd string, timeout time.Duration, log *slog.Logger) (*Registry, error) {
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(Config(filepath.Join(dir, "storage"), addr, htpasswd)), 0o644); err != nil {
		return nil, fmt.Errorf("failed to write registry config: %w", err)
	}
	out := &tailBuffer{max: 8 << 10}
	// Not exec.CommandContext: the registry outlives Start's context and ends with Stop.
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start registry %s: %w", bin, err)
	}
	r := &Registry{addr: addr, dir: dir, cmd: cmd, done: make(chan struct{}), output: out, log: log}
	go func() {
		r.waitErr = cmd.Wait()
		close(r.done)
	}()
	log.Debug("registry starting", "addr", addr, "dir", dir, "pid", cmd.Process.Pid)
	if err := r.waitReady(ctx, timeout); err != nil {
		_ = r.kill()
		return nil, err
	}
	log.Info("registry ready", "addr", addr)
	return r, nil
}

func (r *Registry) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + r.addr + "/v2/"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("failed to build readiness request: %w", err)
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// 401 is a ready registry that requires authentication.
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-r.done:
			return fmt.Errorf("failed to start registry on %s: exited (%v) before answering /v2/; output: %s",
				r.addr, r.waitErr, r.output.String())
		case <-ctx.Done():
			return fmt.Errorf("failed to start registry on %s: /v2/ not ready: %w; output: %s",
				r.addr, ctx.Err(), r.output.String())
		case <-tick.C:
		}
	}
}

// Addr is the registry's host:port, e.g. 127.0.0.1:40123 (plain HTTP).
func (r *Registry) Addr() string { return r.addr }

// URL is the registry's base URL, http://host:port.
func (r *Registry) URL() string { return "http://" + r.addr }

// Dir is the directory holding the registry's config and storage.
func (r *Registry) Dir() string { return r.dir }

// Output returns the tail of the registry's log output.
func (r *Registry) Output() string { return r.output.String() }

// Stop ends the registry (SIGTERM, then SIGKILL after 5 s) and removes its directory if Start
// created it. It is safe to call more than once.
func (r *Registry) Stop() error {
	r.stopOnce.Do(func() {
		r.stopErr = r.kill()
		if r.ownsDir {
			if err := os.RemoveAll(r.dir); err != nil {
				r.stopErr = errors.Join(r.stopErr, fmt.Errorf("failed to remove registry directory: %w", err))
			}
		}
		r.log.Debug("registry stopped", "addr", r.addr)
	})
	return r.stopErr
}

func (r *Registry) kill() error {
	select {
	case <-r.done:
		return nil
	default:
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("failed to signal registry: %w", err)
	}
	select {
	case <-r.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("failed to kill registry: %w", err)
	}
	<-r.done
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(t.buf.String())
}
