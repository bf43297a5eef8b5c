// Package kubetest runs a real etcd and kube-apiserver on loopback for tests and labs: the
// pinned binaries from $KEYSYNC_K8S_BIN (set by `make test` from hack/build-k8s.sh), a
// service-account key pair generated in Go, a static admin token, self-signed serving certs
// from --cert-dir, and a wait for /readyz. A process that exits early is reported with its
// exit code and the tail of its log.
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/keysync-dev/keysync/lab"
)

// EnvBinDir names the environment variable holding the directory of kube-apiserver and etcd.
const EnvBinDir = "KEYSYNC_K8S_BIN"

// Options configure Start.
type Options struct {
	// BinDir holds kube-apiserver and etcd (default $KEYSYNC_K8S_BIN).
	BinDir string
	// Dir is the work directory (etcd data, certs, logs, kubeconfig); required.
	Dir string
	// StartTimeout bounds the wait for /readyz (default 60s).
	StartTimeout time.Duration
	// ExtraAPIServerArgs are appended to kube-apiserver's flags.
	ExtraAPIServerArgs []string
}

// Server is a running etcd + kube-apiserver pair.
type Server struct {
	// URL is the API server's https URL on 127.0.0.1.
	URL string
	// Token is the admin bearer token (user "admin" in group system:masters).
	Token string
	// KubeconfigPath is a kubeconfig file for the admin user.
	KubeconfigPath string
	// Dir is the work directory.
	Dir string

	etcd, apiserver *proc
	stopOnce        sync.Once
}

// Start starts etcd and kube-apiserver and waits until the API server is ready.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.BinDir == "" {
		o.BinDir = os.Getenv(EnvBinDir)
	}
	if o.BinDir == "" {
		return nil, fmt.Errorf("%s is not set: run `make test` (it builds kube-apiserver and etcd and sets it)", EnvBinDir)
	}
	if o.Dir == "" {
		return nil, errors.New("kubetest: Options.Dir is required")
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 60 * time.Second
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			return nil, fmt.Errorf("failed to find %s in %s=%s (run `make k8s-bins`): %w", b, EnvBinDir, o.BinDir, err)
		}
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	s := &Server{URL: "https://127.0.0.1:" + strconv.Itoa(ports[2]), Dir: o.Dir}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, fmt.Errorf("failed to generate token: %w", err)
	}
	s.Token = hex.EncodeToString(tok)

	for _, d := range []string{"etcd", "certs"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("failed to create %s: %w", d, err)
		}
	}
	saKey, saPub, err := serviceAccountKeys(o.Dir)
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(o.Dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(s.Token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return nil, fmt.Errorf("failed to write token file: %w", err)
	}

	s.etcd, err = startProc(filepath.Join(o.BinDir, "etcd"), filepath.Join(o.Dir, "etcd.log"),
		"--name=default", "--data-dir="+filepath.Join(o.Dir, "etcd"),
		"--listen-client-urls="+etcdClient, "--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer, "--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=default="+etcdPeer, "--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return nil, err
	}
	args := []string{
		"--etcd-servers=" + etcdClient,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--cert-dir=" + filepath.Join(o.Dir, "certs"),
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--v=1",
	}
	s.apiserver, err = startProc(filepath.Join(o.BinDir, "kube-apiserver"), filepath.Join(o.Dir, "kube-apiserver.log"),
		append(args, o.ExtraAPIServerArgs...)...)
	if err != nil {
		s.Stop()
		return nil, err
	}
	if err := s.waitReady(ctx, o.StartTimeout); err != nil {
		s.Stop()
		return nil, err
	}
	s.KubeconfigPath = filepath.Join(o.Dir, "kubeconfig")
	if err := clientcmd.WriteToFile(s.kubeconfig(), s.KubeconfigPath); err != nil {
		s.Stop()
		return nil, fmt.Errorf("failed to write kubeconfig: %w", err)
	}
	return s, nil
}

// StartT starts a Server for a test (work directory under t.TempDir, stopped on cleanup). It
// fails the test when KEYSYNC_K8S_BIN is unset: these tests never skip.
func StartT(t testing.TB) *Server {
	t.Helper()
	if os.Getenv(EnvBinDir) == "" {
		t.Fatalf("%s is not set: run `make test`, which builds kube-apiserver and etcd and sets it", EnvBinDir)
	}
	s, err := Start(t.Context(), Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("failed to start kube-apiserver: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// RESTConfig returns an admin client config (the serving cert is self-signed: not verified).
func (s *Server) RESTConfig() *rest.Config {
	return &rest.Config{Host: s.URL, BearerToken: s.Token, QPS: 200, Burst: 400,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
}

// Client returns an admin clientset.
func (s *Server) Client() (kubernetes.Interface, error) {
	c, err := kubernetes.NewForConfig(s.RESTConfig())
	if err != nil {
		return nil, fmt.Errorf("failed to create clientset: %w", err)
	}
	return c, nil
}

func (s *Server) kubeconfig() clientcmdapi.Config {
	return clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"kubetest": {Server: s.URL, InsecureSkipTLSVerify: true}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"admin": {Token: s.Token}},
		Contexts:       map[string]*clientcmdapi.Context{"kubetest": {Cluster: "kubetest", AuthInfo: "admin"}},
		CurrentContext: "kubetest",
	}
}

// Stop stops kube-apiserver, then etcd (SIGTERM, then SIGKILL after 10s).
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.apiserver != nil {
			s.apiserver.stop()
		}
		if s.etcd != nil {
			s.etcd.stop()
		}
	})
}

// waitReady polls /readyz (lab.CheckHTTP, with the admin token) until it passes, failing
// early when etcd or kube-apiserver exits.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &lab.BearerTransport{Token: s.Token,
		Base: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}} //nolint:gosec // loopback self-signed
	for {
		for _, p := range []*proc{s.etcd, s.apiserver} {
			if err := p.exited(); err != nil {
				return err
			}
		}
		last := lab.CheckHTTP(ctx, hc, s.URL+"/readyz")
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after %s (last: %v); log tail:\n%s", timeout, last, s.apiserver.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// proc is one child process with its log file.
type proc struct {
	name, logPath string
	cmd           *exec.Cmd
	done          chan struct{}
	waitErr       error
}

func startProc(bin, logPath string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("failed to create log %s: %w", logPath, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("failed to start %s: %w", bin, err)
	}
	p := &proc{name: filepath.Base(bin), logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited returns an error if the process has ended.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited early (exit code %d); log tail:\n%s", p.name, p.cmd.ProcessState.ExitCode(), p.tail())
	default:
		return nil
	}
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) tail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return lab.LastLines(data, 20)
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("failed to find a free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// serviceAccountKeys writes an ECDSA P-256 signing key pair for service-account tokens.
func serviceAccountKeys(dir string) (keyPath, pubPath string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("failed to generate service-account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", "", fmt.Errorf("failed to encode service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return "", "", fmt.Errorf("failed to encode service-account public key: %w", err)
	}
	keyPath, pubPath = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", fmt.Errorf("failed to write service-account key: %w", err)
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return "", "", fmt.Errorf("failed to write service-account public key: %w", err)
	}
	return keyPath, pubPath, nil
}
