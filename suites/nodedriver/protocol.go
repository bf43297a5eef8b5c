package nodedriver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The node agent protocol. The agent (package suites/nodedriver/agent, binary
// cmd/keysync-node-agent) runs where a node's keys tree and CRI socket are and answers one
// operation per invocation:
//
//	keysync-node-agent [--keys-root DIR] [--cri URL] OP [ARG...]
//
// under the command-hook contract (see Config): stdout is the answer, stderr the reason of a
// failure, exit status 0 success, ExitUnsupported (also for an operation the agent does not
// know), ExitNotFound (read-key of a missing file), anything else an error. The operations:
//
//	list-keys              → the listing (FormatListing), the tree's root not included
//	read-key RELPATH       → the file's bytes (a regular file; never a symlink's target)
//	audit                  → one line per entry (FormatAudit): CRI-O's verdict and the SHA-256,
//	                         never key bytes
//	pull [--auth-stdin] REF → nothing; CRI PullImage (what the pull added is removed again);
//	                         --auth-stdin: credentials from a containers-auth.json on stdin
//	                         (FlagAuthStdin)
//	run [--auth-stdin] REF [ARG...] → the container's output (a CRI pod sandbox; where the agent shares
//	                         CRI-O's filesystem)
//	crio-keys-path [DIR]   → CRI-O's decryption_keys_path as configured in DIR (default
//	                         /etc/crio), a tab, and the file that set it or "default"
//	                         (FormatCRIOKeysPath); reads CRI-O's configuration, no keys
//	wait                   → nothing; sleeps until SIGTERM (an agent pod's main process)
const (
	OpListKeys = "list-keys"
	OpReadKey  = "read-key"
	OpAudit    = "audit"
	OpPull     = "pull"
	OpRun      = "run"
	OpWait     = "wait"
	// OpCRIOKeysPath is newer than the others: an older agent answers it ExitUnsupported.
	OpCRIOKeysPath = "crio-keys-path"
)

// FormatCRIOKeysPath is crio-keys-path's answer line (without the newline); source "" means
// CRI-O's default.
func FormatCRIOKeysPath(keysPath, source string) string {
	if source == "" {
		source = "default"
	}
	return keysPath + "\t" + source
}

// CRIOKeysPath asks node's agent for CRI-O's decryption_keys_path as configured in dir (as
// the agent sees it; "" for /etc/crio) and the file that set it ("" for CRI-O's default).
func (a *Agent) CRIOKeysPath(ctx context.Context, node, dir string) (keysPath, source string, err error) {
	var args []string
	if dir != "" {
		args = append(args, dir)
	}
	out, err := a.Call(ctx, node, OpCRIOKeysPath, args...)
	if err != nil {
		return "", "", err
	}
	line := strings.TrimRight(string(out), "\n")
	p, src, ok := strings.Cut(line, "\t")
	if !ok || p == "" || strings.Contains(src, "\n") {
		return "", "", fmt.Errorf("node %s: malformed %s answer %q", node, OpCRIOKeysPath, clipLine(line))
	}
	if src == "default" {
		src = ""
	}
	return p, src, nil
}

func clipLine(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// Transport runs the node agent on a node: args are the operation and its arguments (the
// transport adds the program and its flags), stdout and stderr receive the agent's streams.
// It returns the agent's exit status, or an error when the agent could not be run or its
// status is unknown (the connection broke, the context ended).
type Transport interface {
	RunAgent(ctx context.Context, node string, args []string, stdout, stderr io.Writer) (int, error)
}

// TransportFunc adapts a function to Transport.
type TransportFunc func(ctx context.Context, node string, args []string, stdout, stderr io.Writer) (int, error)

// RunAgent implements Transport.
func (f TransportFunc) RunAgent(ctx context.Context, node string, args []string, stdout, stderr io.Writer) (int, error) {
	return f(ctx, node, args, stdout, stderr)
}

// Agent is the client side of the protocol over one Transport. It has the keys-tree, pull and
// run methods of Driver and ArgsRunner, and Auditor; a lab's driver embeds it and adds Name
// and Nodes (and may run images its own way).
type Agent struct {
	Transport Transport
}

// Call runs op with args on node and returns its stdout. A failure maps the exit status to
// the contract (ContractError) and quotes the tail of stderr; stdout is returned even then
// (run's output of a failed container).
func (a *Agent) Call(ctx context.Context, node, op string, args ...string) ([]byte, error) {
	return a.call(ctx, node, op, args, func(argv []string, out, errb io.Writer) (int, error) {
		return a.Transport.RunAgent(ctx, node, argv, out, errb)
	})
}

func (a *Agent) call(_ context.Context, node, op string, args []string, run func(argv []string, out, errb io.Writer) (int, error)) ([]byte, error) {
	var out, errb bytes.Buffer
	code, err := run(append([]string{op}, args...), &out, &errb)
	msg := strings.TrimSpace(tail(errb.String(), 2048))
	if err != nil {
		if msg != "" {
			return out.Bytes(), fmt.Errorf("node %s: failed to run node agent %s: %w: %s", node, op, err, msg)
		}
		return out.Bytes(), fmt.Errorf("node %s: failed to run node agent %s: %w", node, op, err)
	}
	if code == 0 {
		return out.Bytes(), nil
	}
	if cerr, ok := ContractError(code, "node "+node+": agent "+op, msg); ok {
		return out.Bytes(), cerr
	}
	return out.Bytes(), fmt.Errorf("node %s: node agent %s exited %d: %s", node, op, code, msg)
}

// ListKeys implements Driver.ListKeys with list-keys.
func (a *Agent) ListKeys(ctx context.Context, node string) ([]Entry, error) {
	out, err := a.Call(ctx, node, OpListKeys)
	if err != nil {
		return nil, err
	}
	return ParseListing(out)
}

// ReadKey implements Driver.ReadKey with read-key (the path is checked here first).
func (a *Agent) ReadKey(ctx context.Context, node, relpath string) ([]byte, error) {
	rel, err := CleanRelPath(relpath)
	if err != nil {
		return nil, err
	}
	out, err := a.Call(ctx, node, OpReadKey, rel)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AuditKeys implements Auditor with audit.
func (a *Agent) AuditKeys(ctx context.Context, node string) ([]AuditEntry, error) {
	out, err := a.Call(ctx, node, OpAudit)
	if err != nil {
		return nil, err
	}
	return ParseAudit(out)
}

// PullImage implements Driver.PullImage with pull; the error quotes the runtime.
func (a *Agent) PullImage(ctx context.Context, node, ref string) error {
	_, err := a.Call(ctx, node, OpPull, ref)
	return err
}

// RunImage implements Driver.RunImage with run.
func (a *Agent) RunImage(ctx context.Context, node, ref string) (string, error) {
	return a.RunImageArgs(ctx, node, ref, nil)
}

// RunImageArgs implements ArgsRunner with run.
func (a *Agent) RunImageArgs(ctx context.Context, node, ref string, args []string) (string, error) {
	out, err := a.Call(ctx, node, OpRun, append([]string{ref}, args...)...)
	return string(out), err
}

// FlagAuthStdin follows pull or run (`pull --auth-stdin REF`): the agent reads a
// containers-auth.json document from stdin and sends the entry for REF's registry host as the
// CRI pull's credentials (PullImageRequest.Auth). Credentials never go on a command line.
const FlagAuthStdin = "--auth-stdin"

// StdinTransport is a Transport that can also feed the agent's stdin (pull and run with
// FlagAuthStdin). Every built-in transport is one.
type StdinTransport interface {
	RunAgentStdin(ctx context.Context, node string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

// ErrNoStdin means the transport cannot feed the agent's stdin, so it cannot send
// credentials.
var ErrNoStdin = errors.New("the node agent's transport cannot pass stdin (registry credentials)")

// callStdin is Call with stdin.
func (a *Agent) callStdin(ctx context.Context, node string, stdin []byte, op string, args ...string) ([]byte, error) {
	st, ok := a.Transport.(StdinTransport)
	if !ok {
		return nil, fmt.Errorf("node %s: agent %s: %w", node, op, ErrNoStdin)
	}
	return a.call(ctx, node, op, args, func(argv []string, out, errb io.Writer) (int, error) {
		return st.RunAgentStdin(ctx, node, argv, bytes.NewReader(stdin), out, errb)
	})
}

// PullImageAuth is PullImage with registry credentials: authFile is a containers-auth.json
// document (REGISTRY_AUTH_FILE's content), passed on the agent's stdin; nil pulls without
// credentials.
func (a *Agent) PullImageAuth(ctx context.Context, node, ref string, authFile []byte) error {
	if authFile == nil {
		return a.PullImage(ctx, node, ref)
	}
	_, err := a.callStdin(ctx, node, authFile, OpPull, FlagAuthStdin, ref)
	return err
}

// RunImageArgsAuth is RunImageArgs with registry credentials (see PullImageAuth).
func (a *Agent) RunImageArgsAuth(ctx context.Context, node, ref string, args []string, authFile []byte) (string, error) {
	if authFile == nil {
		return a.RunImageArgs(ctx, node, ref, args)
	}
	out, err := a.callStdin(ctx, node, authFile, OpRun, append([]string{FlagAuthStdin, ref}, args...)...)
	return string(out), err
}
