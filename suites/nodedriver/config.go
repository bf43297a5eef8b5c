package nodedriver

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Config builds a Driver from a base driver plus per-operation hooks. Build it with
// NewConfig, change fields, then call New.
//
// Precedence, per operation and independently of the others:
//
//  1. the Go func hook (XxxFunc) when set;
//  2. else the command hook (XxxCmd) when set;
//  3. else the Base driver when set;
//  4. else the operation fails with an error wrapping ErrUnsupported that names the hook to set.
//
// Command hooks follow one contract (see RunHook): the operation's arguments are the
// command's only arguments, stdout is the answer, stderr passes through to Config.Stderr and
// is quoted in the error on failure. Exit status 0 is success, ExitUnsupported means the lab
// cannot do it, ExitNotFound means the key file does not exist (ReadKey), anything else is an
// error. The answers:
//
//	NodesCmd                  → one node name per line
//	PullImageCmd NODE REF     → nothing (exit status only)
//	RunImageCmd NODE REF [ARG...] → the container's output (ARGs replace the image's CMD)
//	ListKeysCmd NODE          → one line per entry: "TYPE MODE SIZE PATH", TYPE one of
//	                            file|directory|symlink|other, MODE octal permission bits,
//	                            SIZE decimal bytes, PATH relative to the keys tree (may hold spaces)
//	ReadKeyCmd NODE RELPATH   → the file's bytes
//	AuditKeysCmd NODE         → one line per entry: "TYPE MODE SIZE SHA256 VERDICT PATH" (see
//	                            FormatAudit), CRI-O's verdict judged on the node, no key bytes
//
// Audit's precedence differs in one step: with no audit hook but a list-keys or read-key hook,
// the audit judges what those hooks answer (AuditKeys) rather than asking the base driver.
// The suites run every driver through Guard, which refuses that: judging here reads every
// file, keys the run did not create included, so with list-keys/read-key hooks the suites
// need an audit hook too.
//
// Two more hooks are lab capabilities rather than node operations; the conformance suite's
// resilience feature uses them to add a node to a cluster that is not a kind lab:
//
//	AddNodeCmd NAME           → nothing; on exit 0 node NAME has joined and is Ready
//	RemoveNodeCmd NAME        → nothing; on exit 0 node NAME is out of the cluster
type Config struct {
	// Base is the default implementation (for example nodelab.New(...)); may be nil.
	Base Driver

	NodesFunc     func(ctx context.Context) ([]string, error)
	PullImageFunc func(ctx context.Context, node, ref string) error
	RunImageFunc  func(ctx context.Context, node, ref string, args ...string) (string, error)
	ListKeysFunc  func(ctx context.Context, node string) ([]Entry, error)
	ReadKeyFunc   func(ctx context.Context, node, relpath string) ([]byte, error)
	AuditKeysFunc func(ctx context.Context, node string) ([]AuditEntry, error)

	// Command hooks: argv prefixes; the operation's arguments are appended. ParseCommand
	// turns a shell command line into one.
	NodesCmd     []string
	PullImageCmd []string
	RunImageCmd  []string
	ListKeysCmd  []string
	ReadKeyCmd   []string
	AuditKeysCmd []string
	// AddNodeCmd and RemoveNodeCmd add and remove a cluster node (see above); nil: the lab's
	// own way, if it has one.
	AddNodeCmd    []string
	RemoveNodeCmd []string

	// CmdTimeout bounds every command hook (PullImage and RunImage included).
	CmdTimeout time.Duration
	// Stderr receives the hooks' stderr (os.Stderr by default).
	Stderr io.Writer
}

// Exit statuses of the command-hook contract.
const (
	ExitUnsupported = 3
	ExitNotFound    = 4
)

// ContractError is the error a hook's exit status stands for under the contract: wrapping
// ErrUnsupported for ExitUnsupported, fs.ErrNotExist for ExitNotFound, as "<where>: <msg>: ...";
// ok is false for any other status.
func ContractError(code int, where, msg string) (err error, ok bool) {
	switch code {
	case ExitUnsupported:
		return fmt.Errorf("%s: %s: %w", where, msg, ErrUnsupported), true
	case ExitNotFound:
		return fmt.Errorf("%s: %s: %w", where, msg, fs.ErrNotExist), true
	}
	return nil, false
}

// ContractExitCode is the exit status a hook answers err with (the inverse of ContractError):
// ExitUnsupported, ExitNotFound, 1 for any other error, 0 for nil.
func ContractExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUnsupported):
		return ExitUnsupported
	case errors.Is(err, fs.ErrNotExist):
		return ExitNotFound
	}
	return 1
}

// Environment variables read by (*Config).FromEnv, and their flag twins (--hook-nodes, ...).
const (
	EnvHookNodes      = "KEYSYNC_HOOK_NODES"
	EnvHookPullImage  = "KEYSYNC_HOOK_PULL_IMAGE"
	EnvHookRunImage   = "KEYSYNC_HOOK_RUN_IMAGE"
	EnvHookListKeys   = "KEYSYNC_HOOK_LIST_KEYS"
	EnvHookReadKey    = "KEYSYNC_HOOK_READ_KEY"
	EnvHookAuditKeys  = "KEYSYNC_HOOK_AUDIT_KEYS"
	EnvHookAddNode    = "KEYSYNC_HOOK_ADD_NODE"
	EnvHookRemoveNode = "KEYSYNC_HOOK_REMOVE_NODE"
)

// NewConfig returns a Config with defaults: no hooks, a 5-minute command timeout, stderr to
// os.Stderr.
func NewConfig() Config {
	return Config{CmdTimeout: 5 * time.Minute, Stderr: os.Stderr}
}

// ParseCommand turns a shell command line into an argv prefix for a command hook: it runs
// as `/bin/sh -c 'LINE "$@"'` with the operation's arguments as "$@", so LINE is one command
// that the arguments follow ("crictl --runtime-endpoint unix:///run/crio.sock pull", or
// "/path/hook.sh pull"). An empty line yields nil (no hook).
func ParseCommand(line string) []string {
	line = strings.TrimSpace(line)
	if line == "" {
		return nil
	}
	return []string{"/bin/sh", "-c", line + ` "$@"`, "keysync-hook"}
}

// hookSlots pairs each hook name with its field, for FromEnv and RegisterFlags.
func (c *Config) hookSlots() []struct {
	flag, env string
	dst       *[]string
} {
	return []struct {
		flag, env string
		dst       *[]string
	}{
		{"hook-nodes", EnvHookNodes, &c.NodesCmd},
		{"hook-pull-image", EnvHookPullImage, &c.PullImageCmd},
		{"hook-run-image", EnvHookRunImage, &c.RunImageCmd},
		{"hook-list-keys", EnvHookListKeys, &c.ListKeysCmd},
		{"hook-read-key", EnvHookReadKey, &c.ReadKeyCmd},
		{"hook-audit-keys", EnvHookAuditKeys, &c.AuditKeysCmd},
		{"hook-add-node", EnvHookAddNode, &c.AddNodeCmd},
		{"hook-remove-node", EnvHookRemoveNode, &c.RemoveNodeCmd},
	}
}

// FromEnv sets the command hooks from the KEYSYNC_HOOK_* variables that getenv returns
// non-empty. Call it before RegisterFlags' flags are parsed so that flags win.
func (c *Config) FromEnv(getenv func(string) string) {
	for _, s := range c.hookSlots() {
		if v := getenv(s.env); strings.TrimSpace(v) != "" {
			*s.dst = ParseCommand(v)
		}
	}
}

// RegisterFlags adds --hook-nodes, --hook-pull-image, --hook-run-image, --hook-list-keys,
// --hook-read-key, --hook-audit-keys, --hook-add-node and --hook-remove-node (shell command lines, see
// ParseCommand) and --hook-timeout to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	for _, s := range c.hookSlots() {
		dst := s.dst
		fs.Func(s.flag, "shell command for the node operation (overrides $"+s.env+"; see package nodedriver)",
			func(v string) error { *dst = ParseCommand(v); return nil })
	}
	fs.DurationVar(&c.CmdTimeout, "hook-timeout", c.CmdTimeout, "timeout of each node hook command (and of each node-agent command on any cluster)")
}

// New builds the Driver described by c.
func New(c Config) Driver {
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	if c.CmdTimeout <= 0 {
		c.CmdTimeout = NewConfig().CmdTimeout
	}
	return &hooked{c: c}
}

type hooked struct{ c Config }

var (
	_ Driver     = (*hooked)(nil)
	_ ArgsRunner = (*hooked)(nil)
	_ Auditor    = (*hooked)(nil)
)

func (h *hooked) Name() string {
	if h.c.Base != nil {
		return h.c.Base.Name()
	}
	return "hooks"
}

func (h *hooked) unsupported(op, flagName, env string) error {
	return fmt.Errorf("%s: no hook and no base driver (set --%s or $%s, or use a lab driver): %w",
		op, flagName, env, ErrUnsupported)
}

func (h *hooked) Nodes(ctx context.Context) ([]string, error) {
	switch {
	case h.c.NodesFunc != nil:
		return h.c.NodesFunc(ctx)
	case h.c.NodesCmd != nil:
		out, err := h.run(ctx, "nodes", h.c.NodesCmd)
		if err != nil {
			return nil, err
		}
		var nodes []string
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				nodes = append(nodes, l)
			}
		}
		if len(nodes) == 0 {
			return nil, errors.New("nodes hook printed no node names")
		}
		return nodes, nil
	case h.c.Base != nil:
		return h.c.Base.Nodes(ctx)
	}
	return nil, h.unsupported("Nodes", "hook-nodes", EnvHookNodes)
}

func (h *hooked) PullImage(ctx context.Context, node, ref string) error {
	switch {
	case h.c.PullImageFunc != nil:
		return h.c.PullImageFunc(ctx, node, ref)
	case h.c.PullImageCmd != nil:
		_, err := h.run(ctx, "pull image", h.c.PullImageCmd, node, ref)
		return err
	case h.c.Base != nil:
		return h.c.Base.PullImage(ctx, node, ref)
	}
	return h.unsupported("PullImage", "hook-pull-image", EnvHookPullImage)
}

func (h *hooked) RunImage(ctx context.Context, node, ref string) (string, error) {
	return h.RunImageArgs(ctx, node, ref, nil)
}

// RunImageArgs implements ArgsRunner: the func hook gets args, the command hook gets them
// after NODE REF, the base driver through RunImage (the function).
func (h *hooked) RunImageArgs(ctx context.Context, node, ref string, args []string) (string, error) {
	switch {
	case h.c.RunImageFunc != nil:
		return h.c.RunImageFunc(ctx, node, ref, args...)
	case h.c.RunImageCmd != nil:
		out, err := h.run(ctx, "run image", h.c.RunImageCmd, append([]string{node, ref}, args...)...)
		return string(out), err
	case h.c.Base != nil:
		return RunImage(ctx, h.c.Base, node, ref, args...)
	}
	return "", h.unsupported("RunImage", "hook-run-image", EnvHookRunImage)
}

func (h *hooked) ListKeys(ctx context.Context, node string) ([]Entry, error) {
	switch {
	case h.c.ListKeysFunc != nil:
		return h.c.ListKeysFunc(ctx, node)
	case h.c.ListKeysCmd != nil:
		out, err := h.run(ctx, "list keys", h.c.ListKeysCmd, node)
		if err != nil {
			return nil, err
		}
		return ParseListing(out)
	case h.c.Base != nil:
		return h.c.Base.ListKeys(ctx, node)
	}
	return nil, h.unsupported("ListKeys", "hook-list-keys", EnvHookListKeys)
}

func (h *hooked) ReadKey(ctx context.Context, node, relpath string) ([]byte, error) {
	rel, err := CleanRelPath(relpath)
	if err != nil {
		return nil, err
	}
	switch {
	case h.c.ReadKeyFunc != nil:
		return h.c.ReadKeyFunc(ctx, node, rel)
	case h.c.ReadKeyCmd != nil:
		return h.run(ctx, "read key", h.c.ReadKeyCmd, node, rel)
	case h.c.Base != nil:
		return h.c.Base.ReadKey(ctx, node, rel)
	}
	return nil, h.unsupported("ReadKey", "hook-read-key", EnvHookReadKey)
}

// AuditKeys implements Auditor: the func hook, else the command hook, else (unless a
// list-keys or read-key hook is set: then ErrUnsupported, so that AuditKeys judges what those
// hooks answer) the base driver's Auditor.
func (h *hooked) AuditKeys(ctx context.Context, node string) ([]AuditEntry, error) {
	switch {
	case h.c.AuditKeysFunc != nil:
		return h.c.AuditKeysFunc(ctx, node)
	case h.c.AuditKeysCmd != nil:
		out, err := h.run(ctx, "audit keys", h.c.AuditKeysCmd, node)
		if err != nil {
			return nil, err
		}
		return ParseAudit(out)
	case h.c.ListKeysFunc != nil || h.c.ListKeysCmd != nil || h.c.ReadKeyFunc != nil || h.c.ReadKeyCmd != nil:
		return nil, fmt.Errorf("AuditKeys: judged from the list-keys and read-key hooks: %w", ErrUnsupported)
	}
	if a, ok := h.c.Base.(Auditor); ok {
		return a.AuditKeys(ctx, node)
	}
	return nil, h.unsupported("AuditKeys", "hook-audit-keys", EnvHookAuditKeys)
}

func (h *hooked) run(ctx context.Context, what string, argv []string, args ...string) ([]byte, error) {
	return RunHook(ctx, h.c.CmdTimeout, h.c.Stderr, what, argv, args...)
}

// RunHook runs one command hook under the contract documented on Config and returns its
// stdout. Errors name the operation, the exit status and the tail of stderr.
func RunHook(ctx context.Context, timeout time.Duration, stderr io.Writer, what string, argv []string, args ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("failed to %s: empty hook command", what)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out, errBuf bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], append(append([]string{}, argv[1:]...), args...)...)
	cmd.Stdout = &out
	// Kill the hook's whole process group on timeout, and stop waiting for pipes held open by
	// stray grandchildren.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	if stderr == nil {
		stderr = io.Discard
	}
	cmd.Stderr = io.MultiWriter(&errBuf, stderr)
	err := cmd.Run()
	if err == nil {
		return out.Bytes(), nil
	}
	msg := strings.TrimSpace(tail(errBuf.String(), 2048))
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if cerr, ok := ContractError(ee.ExitCode(), what+" hook", msg); ok {
			return nil, cerr
		}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("failed to %s: hook timed out after %s: %s", what, timeout, msg)
	}
	return nil, fmt.Errorf("failed to %s: hook %w: %s", what, err, msg)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// ParseListing parses a ListKeysCmd answer ("TYPE MODE SIZE PATH" lines; blank lines are
// ignored). Every malformed line is an error naming its line number.
func ParseListing(data []byte) ([]Entry, error) {
	return parseLines(data, "listing", func(line string) (Entry, error) {
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 {
			return Entry{}, fmt.Errorf("want \"TYPE MODE SIZE PATH\", got %d fields", len(f))
		}
		t, mode, size, err := parseEntryHead(f[0], f[1], f[2])
		if err != nil {
			return Entry{}, err
		}
		p, err := CleanRelPath(f[3])
		if err != nil {
			return Entry{}, err
		}
		return Entry{Path: p, Mode: mode, Size: size, Type: t}, nil
	})
}

// FormatListing writes entries in the ListKeysCmd format (the inverse of ParseListing), so a
// hook script can be written with `keysync` itself or tested against it.
func FormatListing(w io.Writer, entries []Entry) error {
	for _, e := range entries {
		if _, err := fmt.Fprintf(w, "%s %04o %d %s\n", e.Type, e.Mode.Perm(), e.Size, e.Path); err != nil {
			return fmt.Errorf("failed to write listing: %w", err)
		}
	}
	return nil
}
