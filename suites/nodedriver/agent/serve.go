package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// ExitUsage is the exit status of a malformed command line (an error under the contract).
const ExitUsage = 2

// usage is the command line's help.
const usage = `usage: keysync-node-agent [--keys-root DIR] [--cri URL] OP [ARG...]

The node half of the keysync conformance suites' node drivers: answers one operation on this
node's keys tree (CRI-O's decryption_keys_path) and CRI socket. stdout is the answer; exit
status 3 means unsupported, 4 not found, anything else but 0 an error (the reason on stderr).

  list-keys            TYPE MODE SIZE PATH lines of the keys tree
  read-key RELPATH     the file's bytes (regular files only, never a symlink)
  audit                TYPE MODE SIZE SHA256 VERDICT PATH lines: CRI-O's verdict, no key bytes
  pull [--auth-stdin] REF
                       CRI PullImage (what the pull added is removed again)
  run [--auth-stdin] REF [ARG...]
                       run REF to completion in a CRI pod sandbox, print its output
  --auth-stdin         read a containers-auth.json document from stdin and send the entry
                       for REF's registry host as the pull's credentials (never on the
                       command line)
  crio-keys-path [DIR] CRI-O's decryption_keys_path as configured in DIR (default /etc/crio:
                       crio.conf, then crio.conf.d/*), then the file that set it or "default"
  wait                 sleep until SIGTERM (an agent pod's main process)
  watch DURATION       for DURATION (e.g. 30s), one line per version of every entry that appears
                       in the keys tree, even briefly, with CRI-O's verdict (inotify; no key bytes)

Flags:
`

// Main is the agent's command line (args without the program name): it parses the flags,
// answers the operation (Serve) and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return MainIO(ctx, args, nil, stdout, stderr)
}

// MainIO is Main with the agent's stdin (pull and run --auth-stdin read credentials from it).
func MainIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keysync-node-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := Options{}
	fs.StringVar(&opts.KeysRoot, "keys-root", DefaultKeysRoot, "CRI-O's decryption_keys_path as this process sees it")
	fs.StringVar(&opts.CRIEndpoint, "cri", DefaultCRIEndpoint, "CRI-O's socket as this process sees it")
	fs.StringVar(&opts.LogDir, "log-dir", "", "directory for run's container logs, seen by CRI-O too (default: a temp dir)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return ExitUsage
	}
	n, err := New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "keysync-node-agent: %v\n", err)
		return ExitUsage
	}
	defer n.Close()
	return ServeIO(ctx, n, fs.Args(), stdin, stdout, stderr)
}

// op is one operation: its argument count (max -1: any number from min) and its handler.
type op struct {
	min, max int
	usage    string
	run      func(ctx context.Context, n *Node, args []string, stdout io.Writer) error
}

var ops = map[string]op{
	nodedriver.OpListKeys: {0, 0, "list-keys", func(ctx context.Context, n *Node, _ []string, w io.Writer) error {
		entries, err := n.ListKeys(ctx)
		if err != nil {
			return err
		}
		return nodedriver.FormatListing(w, entries)
	}},
	nodedriver.OpReadKey: {1, 1, "read-key RELPATH", func(ctx context.Context, n *Node, args []string, w io.Writer) error {
		data, err := n.ReadKey(ctx, args[0])
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("failed to write key %s: %w", args[0], err)
		}
		return nil
	}},
	nodedriver.OpAudit: {0, 0, "audit", func(ctx context.Context, n *Node, _ []string, w io.Writer) error {
		entries, err := n.Audit(ctx)
		if err != nil {
			return err
		}
		return nodedriver.FormatAudit(w, entries)
	}},
	nodedriver.OpPull: {1, 1, "pull [--auth-stdin] REF", func(ctx context.Context, n *Node, args []string, _ io.Writer) error {
		return n.Pull(ctx, args[0])
	}},
	nodedriver.OpRun: {1, -1, "run [--auth-stdin] REF [ARG...]", func(ctx context.Context, n *Node, args []string, w io.Writer) error {
		out, err := n.Run(ctx, args[0], args[1:])
		if _, werr := io.WriteString(w, out); werr != nil && err == nil {
			err = fmt.Errorf("failed to write the container's output: %w", werr)
		}
		return err
	}},
	nodedriver.OpWatch: {1, 1, "watch DURATION", func(ctx context.Context, n *Node, args []string, w io.Writer) error {
		d, err := time.ParseDuration(args[0])
		if err != nil {
			return fmt.Errorf("failed to parse watch duration: %w", err)
		}
		return n.Watch(ctx, d, w)
	}},
	nodedriver.OpCRIOKeysPath: {0, 1, "crio-keys-path [CONFIG_DIR]", func(_ context.Context, _ *Node, args []string, w io.Writer) error {
		dir := DefaultCRIOConfigDir
		if len(args) == 1 {
			dir = args[0]
		}
		p, source, err := CRIOKeysPath(dir)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, nodedriver.FormatCRIOKeysPath(p, source))
		return err
	}},
	nodedriver.OpWait: {0, 0, "wait", func(ctx context.Context, _ *Node, _ []string, _ io.Writer) error {
		<-ctx.Done()
		return nil
	}},
}

// Serve answers one operation (args: OP [ARG...]) for n and returns the contract's exit
// status; the reason of a failure goes to stderr. An operation this agent does not know is
// unsupported (ExitUnsupported), so that a client can fall back.
func Serve(ctx context.Context, n *Node, args []string, stdout, stderr io.Writer) int {
	return ServeIO(ctx, n, args, nil, stdout, stderr)
}

// ServeIO is Serve with stdin: pull and run take --auth-stdin (registry credentials as a
// containers-auth.json document on stdin, see readAuthStdin).
func ServeIO(ctx context.Context, n *Node, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, args, err := readAuthStdin(ctx, args, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "keysync-node-agent: %s: %v\n", args[0], err)
		return ExitUsage
	}
	if len(args) == 0 {
		fmt.Fprintf(stderr, "keysync-node-agent: no operation (want one of %s)\n", opNames())
		return ExitUsage
	}
	o, ok := ops[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "keysync-node-agent: unknown operation %q (this agent knows %s)\n", args[0], opNames())
		return nodedriver.ExitUnsupported
	}
	rest := args[1:]
	if len(rest) < o.min || (o.max >= 0 && len(rest) > o.max) {
		fmt.Fprintf(stderr, "keysync-node-agent: usage: %s\n", o.usage)
		return ExitUsage
	}
	err = o.run(ctx, n, rest, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "keysync-node-agent: %s: %v\n", args[0], err)
	}
	return nodedriver.ContractExitCode(err)
}

func opNames() string {
	return strings.Join([]string{nodedriver.OpListKeys, nodedriver.OpReadKey, nodedriver.OpAudit,
		nodedriver.OpPull, nodedriver.OpRun, nodedriver.OpCRIOKeysPath, nodedriver.OpWait, nodedriver.OpWatch}, ", ")
}
