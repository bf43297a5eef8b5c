package nodelab

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/internal/registry"
	"github.com/keysync-dev/keysync/internal/runtimewrap"
	"github.com/keysync-dev/keysync/lab/labconfig"
)

// state is what later ups reuse: the loopback addresses chosen on the first up.
type state struct {
	Registry    string `json:"registry"`
	MockKP      string `json:"mockkp"`
	MockKPAdmin string `json:"mockkpAdmin"`
	// MockKPTLS is mockkp's TLS address for the public names: a loopback address of this lab's
	// own (127.a.b.c) on port 443, which the synchronizer's hosts file names.
	MockKPTLS string `json:"mockkpTLS,omitempty"`
	Etcd      string `json:"etcd,omitempty"`
	EtcdPeer  string `json:"etcdPeer,omitempty"`
	APIServer string `json:"apiServer,omitempty"`
	KMSHealth string `json:"kmsHealth,omitempty"`
	// SecretsEncryptedFor is the fingerprint of the encryption config every Secret was last
	// rewritten for (encryptSecrets).
	SecretsEncryptedFor string `json:"secretsEncryptedFor,omitempty"`
	SyncerMetrics       string `json:"syncerMetrics"`
	SyncerProbe         string `json:"syncerProbe"`
	// Synchronizer is the last up's Options.Synchronizer: Status skips the synchronizer for
	// "none" and checks a foreign one by its process only.
	Synchronizer string `json:"synchronizer,omitempty"`
}

// loadState reads the recorded addresses and the admin token; a missing or damaged state
// only costs new ports.
func (r *runner) loadState() error {
	data, err := os.ReadFile(r.l.StateFile())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("failed to read lab state: %w", err)
	default:
		if err := json.Unmarshal(data, &r.st); err != nil {
			r.st = state{}
		}
	}
	tok, err := os.ReadFile(r.l.TokenFile())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to read the lab's admin token: %w", err)
	}
	r.token = strings.TrimSpace(string(tok))
	return nil
}

func (r *runner) saveState() error {
	data, err := json.MarshalIndent(r.st, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode lab state: %w", err)
	}
	if err := atomicfile.Write(r.l.StateFile(), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("failed to save lab state: %w", err)
	}
	return nil
}

// port returns *addr when it is set and either in use by the lab's own running process
// (ours) or free, and a new free loopback address otherwise; it records the choice.
func (r *runner) port(addr *string, ours bool) (string, error) {
	if *addr != "" && (ours || portFree(*addr)) {
		return *addr, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("failed to find a free port: %w", err)
	}
	*addr = l.Addr().String()
	l.Close()
	return *addr, r.saveState()
}

// publicAddr returns *addr when it is set and ours or free, else a new free address on port
// labconfig.KPPublicPort of a random loopback IP (each lab its own, so two labs never clash on
// port 443); it records the choice.
func (r *runner) publicAddr(addr *string, ours bool) (string, error) {
	if *addr != "" && (ours || portFree(*addr)) {
		return *addr, nil
	}
	for range 20 {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("failed to pick a loopback address: %w", err)
		}
		a := net.JoinHostPort(fmt.Sprintf("127.%d.%d.%d", 1+int(b[0])%254, b[1], 1+int(b[2])%254), strconv.Itoa(labconfig.KPPublicPort))
		if portFree(a) {
			*addr = a
			return a, r.saveState()
		}
	}
	return "", fmt.Errorf("found no free loopback address with port %d for mockkp's public names", labconfig.KPPublicPort)
}

func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// checkHost checks root, the binaries, overlayfs and whether runc needs the runtime wrapper,
// and creates the work dir's log and run dirs.
func (r *runner) checkHost(context.Context) (string, error) {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("the node lab runs CRI-O and needs root"))
	}
	o := r.opts
	need := []string{
		filepath.Join(o.CRIOBinDir, "crio"), filepath.Join(o.CRIOBinDir, "pinns"),
		filepath.Join(o.K8sBinDir, "kube-apiserver"), filepath.Join(o.K8sBinDir, "etcd"),
		filepath.Join(o.BinDir, "mockkp"), filepath.Join(o.BinDir, "keysync-syncer"), filepath.Join(o.BinDir, "keysync-kms-plugin"),
		conmonPath, catatonitPath, registry.DefaultBinary, filepath.Join(cniPluginDir, "loopback"),
	}
	wrap, err := runtimewrap.Needed("/proc/self/status")
	if err != nil {
		errs = append(errs, err)
	}
	r.wrap = wrap
	if wrap {
		need = append(need, filepath.Join(o.BinDir, "keysync-runtime-wrapper"))
	}
	for _, p := range need {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm()&0o111 == 0 {
			errs = append(errs, fmt.Errorf("missing executable %s (make deps / make crio / make build)", p))
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		errs = append(errs, errors.New("missing runc (make deps)"))
	}
	if fs, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(fs), "\toverlay\n") {
		errs = append(errs, errors.New("the kernel lacks overlayfs (modprobe overlay)"))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	for _, d := range []string{r.l.LogDir(), r.l.RunDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("failed to create %s: %w", d, err)
		}
	}
	if wrap {
		return "runtime wrapper: CapBnd lacks CAP_SYS_RESOURCE", nil
	}
	return "", nil
}
