// Package runtimewrap makes an OCI runtime (runc) usable where the capability bounding set lacks
// capabilities containers ask for: the VMs the keysync labs run on (no CAP_SYS_RESOURCE), and
// kind nodes started by an older dockerd (no CAP_PERFMON, CAP_BPF, CAP_CHECKPOINT_RESTORE).
//
// On such a host runc fails twice: a container asking for a capability outside the bounding set
// (every privileged container) fails with "unable to apply caps: operation not permitted", and,
// without CAP_SYS_RESOURCE, a container asking for a lower oom_score_adj than its caller's
// (CRI-O's infra containers ask for -998, static control-plane pods for -997) fails with
// "failed to update /proc/self/oom_score_adj: Permission denied". containerd has
// restrict_oom_score_adj for the second; CRI-O and dockerd have nothing.
//
// The wrapper sits where the runtime is configured (dockerd "runtimes"/"default-runtime", CRI-O
// runtime_path). For `create` and `run` it rewrites the bundle's config.json, for `exec` the
// --process file: it removes from every capability set each capability outside the wrapper's own
// bounding set, and, only where that set lacks CAP_SYS_RESOURCE, raises process.oomScoreAdj to
// the wrapper's own /proc/self/oom_score_adj when it is lower. Then it execs the real runtime
// with the original arguments. Every other command passes straight through, and a file that
// asks for nothing the host cannot grant is left untouched.
//
// Install it only on hosts that need it (see Needed); never change a user's daemon silently.
package runtimewrap

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keysync-dev/keysync/internal/atomicfile"
)

// CapSysResource is the capability whose absence from the bounding set makes a host need the
// wrapper.
const CapSysResource = "CAP_SYS_RESOURCE"

// capNumbers maps capability names to their numbers (linux/capability.h). Names the wrapper
// does not know are left in place for the runtime to judge.
var capNumbers = map[string]int{ //nolint:gochecknoglobals // constant table
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
	"CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
	"CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
	"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
	"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
	"CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
	"CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
	"CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
	"CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
	"CAP_CHECKPOINT_RESTORE": 40,
}

// capSysResourceBit is CAP_SYS_RESOURCE's number.
const capSysResourceBit = 24

// minOOMScoreAdj is the kernel's lowest oom_score_adj: as a limit it clamps nothing.
const minOOMScoreAdj = -1000

// Limits are what the wrapper's caller may grant: its capability bounding set and its own
// oom_score_adj (a container may not ask for a lower one).
type Limits struct {
	Bounding       uint64
	MinOOMScoreAdj int
}

// allows reports whether the bounding set holds the named capability; unknown names pass.
func (l Limits) allows(name string) bool {
	n, ok := capNumbers[strings.ToUpper(name)]
	return !ok || l.Bounding&(1<<uint(n)) != 0
}

// RuntimeEnv names the environment variable that overrides the real runtime's path.
const RuntimeEnv = "KEYSYNC_RUNTIME"

// RuntimeFlag is a wrapper-only flag accepted as the FIRST argument(s), e.g. through dockerd's
// runtimeArgs: --keysync-runtime=/usr/sbin/runc. It is removed before the real runtime runs.
const RuntimeFlag = "--keysync-runtime"

// defaultRuntimePaths are tried, after PATH lookup of "runc", when nothing names the runtime.
func defaultRuntimePaths() []string {
	return []string{"/usr/bin/runc", "/usr/sbin/runc", "/usr/local/bin/runc", "/usr/local/sbin/runc"}
}

// BoundingSetHas reports whether the CapBnd line of a /proc/<pid>/status document has
// capability number bit.
func BoundingSetHas(status io.Reader, bit int) (bool, error) {
	mask, err := BoundingSet(status)
	if err != nil {
		return false, err
	}
	return mask&(1<<uint(bit)) != 0, nil
}

// BoundingSet parses the CapBnd line of a /proc/<pid>/status document.
func BoundingSet(status io.Reader) (uint64, error) {
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapBnd:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("failed to parse CapBnd %q: %w", strings.TrimSpace(v), err)
		}
		return mask, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("failed to read process status: %w", err)
	}
	return 0, errors.New("failed to find CapBnd in process status")
}

// Needed reports whether a host's container engine needs the wrapper: its bounding set (read
// from statusPath, normally /proc/self/status) lacks CAP_SYS_RESOURCE, which every privileged
// container and every lowered oom_score_adj asks for. (Inside the kind nodes the wrapper is
// always CRI-O's runtime: there it also drops what an older dockerd left out of the nodes'
// bounding set.)
func Needed(statusPath string) (bool, error) {
	f, err := os.Open(statusPath)
	if err != nil {
		return false, fmt.Errorf("failed to open %s: %w", statusPath, err)
	}
	defer f.Close()
	has, err := BoundingSetHas(f, capSysResourceBit)
	if err != nil {
		return false, fmt.Errorf("failed to read the capability bounding set from %s: %w", statusPath, err)
	}
	return !has, nil
}

// RewriteSpec applies the wrapper's rules to an OCI runtime spec (a bundle's config.json) and
// reports whether anything changed. Fields it does not touch are kept byte for byte.
func RewriteSpec(data []byte, l Limits) ([]byte, bool, error) {
	var spec map[string]json.RawMessage
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, false, fmt.Errorf("failed to parse runtime spec: %w", err)
	}
	if spec == nil {
		return nil, false, errors.New("failed to parse runtime spec: not a JSON object")
	}
	proc, ok := spec["process"]
	if !ok || isNull(proc) {
		return data, false, nil
	}
	newProc, changed, err := RewriteProcess(proc, l)
	if err != nil {
		return nil, false, err
	}
	if !changed {
		return data, false, nil
	}
	spec["process"] = newProc
	out, err := json.Marshal(spec)
	if err != nil {
		return nil, false, fmt.Errorf("failed to encode runtime spec: %w", err)
	}
	return out, true, nil
}

// RewriteProcess applies the wrapper's rules to an OCI process object (the "process" member of
// a spec, or the file `runc exec --process` reads) and reports whether anything changed.
func RewriteProcess(data []byte, l Limits) ([]byte, bool, error) {
	var proc map[string]json.RawMessage
	if err := json.Unmarshal(data, &proc); err != nil {
		return nil, false, fmt.Errorf("failed to parse process: %w", err)
	}
	if proc == nil {
		return nil, false, errors.New("failed to parse process: not a JSON object")
	}
	changed := false

	if raw, ok := proc["capabilities"]; ok && !isNull(raw) {
		var sets map[string]json.RawMessage
		if err := json.Unmarshal(raw, &sets); err != nil {
			return nil, false, fmt.Errorf("failed to parse process.capabilities: %w", err)
		}
		setsChanged := false
		for name, rawSet := range sets {
			if isNull(rawSet) {
				continue
			}
			var caps []string
			if err := json.Unmarshal(rawSet, &caps); err != nil {
				return nil, false, fmt.Errorf("failed to parse process.capabilities.%s: %w", name, err)
			}
			kept := make([]string, 0, len(caps))
			for _, c := range caps {
				if l.allows(c) {
					kept = append(kept, c)
				}
			}
			if len(kept) == len(caps) {
				continue
			}
			enc, err := json.Marshal(kept)
			if err != nil {
				return nil, false, fmt.Errorf("failed to encode process.capabilities.%s: %w", name, err)
			}
			sets[name] = enc
			setsChanged = true
		}
		if setsChanged {
			enc, err := json.Marshal(sets)
			if err != nil {
				return nil, false, fmt.Errorf("failed to encode process.capabilities: %w", err)
			}
			proc["capabilities"] = enc
			changed = true
		}
	}

	if raw, ok := proc["oomScoreAdj"]; ok && !isNull(raw) {
		var adj int
		if err := json.Unmarshal(raw, &adj); err != nil {
			return nil, false, fmt.Errorf("failed to parse process.oomScoreAdj: %w", err)
		}
		if adj < l.MinOOMScoreAdj {
			proc["oomScoreAdj"] = json.RawMessage(strconv.Itoa(l.MinOOMScoreAdj))
			changed = true
		}
	}

	if !changed {
		return data, false, nil
	}
	out, err := json.Marshal(proc)
	if err != nil {
		return nil, false, fmt.Errorf("failed to encode process: %w", err)
	}
	return out, true, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// Invocation is what the wrapper needs to know about a runtime command line.
type Invocation struct {
	// Command is the runtime subcommand (create, run, exec, start, ...); empty for none.
	Command string
	// Bundle is the --bundle/-b value of create/run; empty means the working directory.
	Bundle string
	// ProcessFile is the --process/-p value of exec; empty when exec takes its process from
	// the command line.
	ProcessFile string
}

// isGlobalValueFlag reports whether runc's global flag name takes a value (runc main.go); the
// others are booleans.
func isGlobalValueFlag(name string) bool {
	switch name {
	case "root", "log", "log-format", "criu", "rootless":
		return true
	}
	return false
}

// ParseArgs finds the subcommand and the file arguments the wrapper rewrites in a runc command
// line (without argv[0]).
func ParseArgs(args []string) Invocation {
	var inv Invocation
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if isGlobalValueFlag(name) {
			i++
		}
	}
	if i >= len(args) {
		return inv
	}
	inv.Command = args[i]
	var want []string
	switch inv.Command {
	case "create", "run":
		want = []string{"bundle", "b"}
	case "exec":
		want = []string{"process", "p"}
	default:
		return inv
	}
	val := flagValue(args[i+1:], want)
	if inv.Command == "exec" {
		inv.ProcessFile = val
	} else {
		inv.Bundle = val
	}
	return inv
}

// flagValue returns the value of the last occurrence of any of names (-n v, --n v, -n=v, --n=v)
// before the first positional argument's "--".
func flagValue(args []string, names []string) string {
	val := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name := strings.TrimLeft(a, "-")
		name, v, hasValue := strings.Cut(name, "=")
		for _, n := range names {
			if name != n {
				continue
			}
			if hasValue {
				val = v
			} else if i+1 < len(args) {
				val = args[i+1]
				i++
			}
		}
	}
	return val
}

// Wrapper is one run of the wrapper. The zero value is not usable; see NewWrapper.
type Wrapper struct {
	// StatusPath is the process status read for CapBnd (/proc/self/status).
	StatusPath string
	// OOMScoreAdjPath is the file holding the wrapper's own oom_score_adj (/proc/self/oom_score_adj).
	OOMScoreAdjPath string
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string
	// Getwd returns the working directory, the default bundle (os.Getwd).
	Getwd func() (string, error)
	// LookPath finds a program on PATH (exec.LookPath).
	LookPath func(string) (string, error)
	// Self is the wrapper's own executable, never used as the real runtime.
	Self string
}

// Prepare rewrites the files named by args where they ask for what this host cannot grant and
// returns the real runtime's path and its argument vector (argv[0] included).
func (w *Wrapper) Prepare(args []string) (string, []string, error) {
	runtime, args := "", append([]string(nil), args...)
	for len(args) > 0 && (args[0] == RuntimeFlag || strings.HasPrefix(args[0], RuntimeFlag+"=")) {
		if v, ok := strings.CutPrefix(args[0], RuntimeFlag+"="); ok {
			runtime, args = v, args[1:]
			continue
		}
		if len(args) < 2 {
			return "", nil, fmt.Errorf("failed to parse %s: missing value", RuntimeFlag)
		}
		runtime, args = args[1], args[2:]
	}
	path, err := w.resolveRuntime(runtime)
	if err != nil {
		return "", nil, err
	}
	argv := append([]string{filepath.Base(path)}, args...)

	inv := ParseArgs(args)
	var target string
	var rewrite func([]byte, Limits) ([]byte, bool, error)
	switch inv.Command {
	case "create", "run":
		bundle := inv.Bundle
		if bundle == "" {
			if bundle, err = w.Getwd(); err != nil {
				return "", nil, fmt.Errorf("failed to find the bundle directory: %w", err)
			}
		}
		target, rewrite = filepath.Join(bundle, "config.json"), RewriteSpec
	case "exec":
		if inv.ProcessFile == "" {
			return path, argv, nil
		}
		target, rewrite = inv.ProcessFile, RewriteProcess
	default:
		return path, argv, nil
	}

	f, err := os.Open(w.StatusPath)
	if err != nil {
		return "", nil, fmt.Errorf("failed to open %s: %w", w.StatusPath, err)
	}
	bnd, err := BoundingSet(f)
	f.Close()
	if err != nil {
		return "", nil, err
	}
	// Capabilities outside the bounding set are dropped on every host (runc cannot grant them
	// anyway); oom_score_adj is clamped only where lowering it needs the missing
	// CAP_SYS_RESOURCE.
	minAdj := minOOMScoreAdj
	if bnd&(1<<capSysResourceBit) == 0 {
		if minAdj, err = readOOMScoreAdj(w.OOMScoreAdjPath); err != nil {
			return "", nil, err
		}
	}
	if err := rewriteFile(target, Limits{Bounding: bnd, MinOOMScoreAdj: minAdj}, rewrite); err != nil {
		return "", nil, err
	}
	return path, argv, nil
}

func (w *Wrapper) resolveRuntime(fromFlag string) (string, error) {
	candidates := []string{}
	if fromFlag != "" {
		candidates = append(candidates, fromFlag)
	} else if env := w.Getenv(RuntimeEnv); env != "" {
		candidates = append(candidates, env)
	} else {
		if p, err := w.LookPath("runc"); err == nil {
			candidates = append(candidates, p)
		}
		candidates = append(candidates, defaultRuntimePaths()...)
	}
	for _, c := range candidates {
		if !filepath.IsAbs(c) {
			p, err := w.LookPath(c)
			if err != nil {
				continue
			}
			c = p
		}
		st, err := os.Stat(c)
		if err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			continue
		}
		if w.Self != "" && sameFile(c, w.Self) {
			continue
		}
		return c, nil
	}
	return "", fmt.Errorf("failed to find the real OCI runtime (tried %s; set %s or %s)",
		strings.Join(candidates, ", "), RuntimeEnv, RuntimeFlag)
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

func readOOMScoreAdj(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("failed to read own oom_score_adj: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("failed to parse own oom_score_adj %q: %w", strings.TrimSpace(string(b)), err)
	}
	return v, nil
}

// rewriteFile rewrites path in place through a temp file in its directory and a rename, so a
// reader never sees a partial file. Unchanged files are not touched.
func rewriteFile(path string, l Limits, rewrite func([]byte, Limits) ([]byte, bool, error)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", path, err)
	}
	out, changed, err := rewrite(data, l)
	if err != nil {
		return fmt.Errorf("failed to rewrite %s: %w", path, err)
	}
	if !changed {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("failed to stat %s: %w", path, err)
	}
	return atomicfile.Write(path, out, st.Mode().Perm())
}
