package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/internal/syncbuf"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
	"github.com/keysync-dev/keysync/syncer/app"
	"github.com/keysync-dev/keysync/syncer/keyfile"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	ns = "image-key-synchronizer"
	sa = "system:serviceaccount:image-key-synchronizer:addon-image-key-synchronizer"
	// The test binary re-executes itself as the syncer when childArgsEnv is set.
	childArgsEnv = "KEYSYNC_SYNCER_TEST_ARGS"
	// pauseEnv names a marker file: the child writes "staged\nfinal" into it after staging a
	// file and then blocks before the rename, so that the test can SIGKILL it there.
	pauseEnv = "KEYSYNC_SYNCER_TEST_PAUSE_AFTER_STAGE"
	// pauseStepEnv, with pauseEnv, moves the pause to another keyfile.Step of a write
	// ("recorded", "staged", "renamed"); the marker then holds the final path.
	pauseStepEnv = "KEYSYNC_SYNCER_TEST_PAUSE_STEP"
	addrEnv      = "KEYSYNC_SYNCER_TEST_ADDR_FILE"
)

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgsEnv); args != "" {
		os.Exit(runChild(args))
	}
	os.Exit(m.Run())
}

func runChild(argsJSON string) int {
	var args []string
	if err := json.Unmarshal([]byte(argsJSON), &args); err != nil {
		fmt.Fprintln(os.Stderr, "bad child args:", err)
		return 2
	}
	cfg, err := app.ParseFlags(args, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if marker, step := os.Getenv(pauseEnv), os.Getenv(pauseStepEnv); marker != "" && step != "" {
		cfg.OnStep = func(st keyfile.Step, final string) {
			if string(st) != step {
				return
			}
			_ = os.WriteFile(marker+".tmp", []byte(final), 0o600)
			_ = os.Rename(marker+".tmp", marker)
			select {} // the test SIGKILLs the process here
		}
	} else if marker != "" {
		cfg.AfterStage = func(staged, final string) {
			_ = os.WriteFile(marker+".tmp", []byte(staged+"\n"+final), 0o600)
			_ = os.Rename(marker+".tmp", marker)
			select {} // the test SIGKILLs the process here
		}
	}
	if f := os.Getenv(addrEnv); f != "" {
		cfg.Listening = func(m, p string) {
			_ = os.WriteFile(f+".tmp", []byte(m+" "+p), 0o600)
			_ = os.Rename(f+".tmp", f)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := app.Run(ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "keysync-syncer:", err)
		return 1
	}
	return 0
}

// env is one real kube-apiserver + etcd, a real mockkp, and a keys tree.
type env struct {
	kube       *kubetest.Server
	client     kubernetes.Interface
	kp         *mockkptest.Env
	root       string // stands for the host's /etc/crio
	keys       string // <root>/keys/synced
	staging    string // <root>/.keysync-staging
	kubeconfig string // the syncer's: impersonates the addon's ServiceAccount
	// bin, when set, is the built keysync-syncer binary to run instead of this test binary.
	bin string
}

// buildSyncer builds cmd/keysync-syncer as `make syncer` does (static, stripped).
func buildSyncer(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "keysync-syncer")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "github.com/keysync-dev/keysync/cmd/keysync-syncer")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("failed to build keysync-syncer: %v\n%s", err, msg)
	}
	return out
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{kube: kubetest.StartT(t), kp: mockkptest.Start(t), root: t.TempDir()}
	e.keys = filepath.Join(e.root, "keys", "synced")
	e.staging = filepath.Join(e.root, ".keysync-staging")
	var err error
	if e.client, err = e.kube.Client(); err != nil {
		t.Fatal(err)
	}
	// The addon's own manifests: the syncer runs with exactly the Role they grant.
	for _, f := range []string{"namespace.yaml", "serviceaccount.yaml", "role.yaml", "rolebinding.yaml", "daemonset.yaml"} {
		applyManifest(t, e.client, filepath.Join("..", "deploy", f))
	}
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"k": {Server: e.kube.URL, InsecureSkipTLSVerify: true}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"sa": {Token: e.kube.Token, Impersonate: sa}},
		Contexts:       map[string]*clientcmdapi.Context{"k": {Cluster: "k", AuthInfo: "sa"}},
		CurrentContext: "k",
	}
	e.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(cfg, e.kubeconfig); err != nil {
		t.Fatal(err)
	}
	return e
}

func applyManifest(t testing.TB, c kubernetes.Interface, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, nil)
	if err != nil {
		t.Fatalf("failed to decode %s: %v", path, err)
	}
	ctx := context.Background()
	switch o := obj.(type) {
	case *corev1.Namespace:
		_, err = c.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
	case *corev1.ServiceAccount:
		_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	default:
		err = createTyped(ctx, c, obj)
	}
	if err != nil {
		t.Fatalf("failed to create %s: %v", path, err)
	}
}

func createTyped(ctx context.Context, c kubernetes.Interface, obj runtime.Object) error {
	var err error
	switch o := obj.(type) {
	case *rbacv1.Role:
		_, err = c.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *rbacv1.RoleBinding:
		_, err = c.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *appsv1.DaemonSet:
		// Validated by the API server (no controllers run here, so no pod starts).
		_, err = c.AppsV1().DaemonSets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	default:
		err = fmt.Errorf("unexpected kind %T", obj)
	}
	return err
}

func (e *env) configSecret(t testing.TB) {
	t.Helper()
	data, err := json.Marshal(e.kp.Config())
	if err != nil {
		t.Fatal(err)
	}
	e.put(t, kpkey.ConfigSecretName, corev1.SecretTypeOpaque, map[string][]byte{kpkey.ConfigKey: data})
}

// put creates or updates a Secret.
func (e *env) put(t testing.TB, name string, typ corev1.SecretType, data map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: typ, Data: data}
	cur, err := e.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = e.client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
	case err == nil:
		cur.Data = data
		_, err = e.client.CoreV1().Secrets(ns).Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("failed to put Secret %s: %v", name, err)
	}
}

func (e *env) del(t testing.TB, name string) {
	t.Helper()
	if err := e.client.CoreV1().Secrets(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("failed to delete Secret %s: %v", name, err)
	}
}

// waitEvent waits for an Event with reason on Secret name.
func (e *env) waitEvent(t testing.TB, name, reason string) corev1.Event {
	t.Helper()
	var found corev1.Event
	waitFor(t, 20*time.Second, "Event "+reason+" on Secret "+name, func() bool {
		list, err := e.client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Secret,involvedObject.name=" + name})
		if err != nil {
			return false
		}
		for _, ev := range list.Items {
			if ev.Reason == reason {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// child is the syncer running as a separate process.
type child struct {
	t       testing.TB
	cmd     *exec.Cmd
	log     *syncbuf.Buffer
	done    chan struct{}
	metrics string
	probe   string
}

// start runs the syncer (this test binary, re-executed) against e and waits until it is ready
// unless noWait. extraEnv adds KEY=VALUE pairs (pauseEnv).
func (e *env) start(t testing.TB, extraEnv ...string) *child {
	t.Helper()
	flags := []string{"--kubeconfig=" + e.kubeconfig, "--keys-dir=" + e.keys,
		"--staging-dir=" + e.staging, "--namespace=" + ns, "--node-name=node-1",
		"--metrics-addr=127.0.0.1:0", "--probe-addr=127.0.0.1:0",
		"--retry-base-delay=50ms", "--retry-max-delay=1s", "--unwrap-timeout=500ms", "--log-level=debug",
		"--allow-insecure-kp"} // mockkp serves http on loopback, as in the labs
	args, _ := json.Marshal(flags)
	addrFile := filepath.Join(t.TempDir(), "addr")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+string(args), addrEnv+"="+addrFile)
	if e.bin != "" {
		// The real binary has no address hook: give it fixed free ports.
		ports := freeAddrs(t, 2)
		flags[5], flags[6] = "--metrics-addr="+ports[0], "--probe-addr="+ports[1]
		cmd = exec.Command(e.bin, flags...)
		cmd.Env = os.Environ()
		if err := os.WriteFile(addrFile, []byte(ports[0]+" "+ports[1]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	c := &child{t: t, cmd: cmd, log: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			t.Logf("syncer log tail:\n%s", tail(c.log.String(), 30))
		}
	})
	c.waitFor(10*time.Second, "listening", func() bool {
		data, err := os.ReadFile(addrFile)
		if err != nil {
			return false
		}
		c.metrics, c.probe, _ = strings.Cut(string(data), " ")
		return true
	})
	c.waitReady()
	return c
}

func (c *child) waitFor(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-c.done:
			c.t.Fatalf("syncer exited (%v) while waiting for %s; log:\n%s", c.cmd.ProcessState, what, tail(c.log.String(), 30))
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *child) waitReady() {
	c.t.Helper()
	c.waitFor(30*time.Second, "/readyz", func() bool {
		resp, err := http.Get("http://" + c.probe + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// stop sends SIGTERM and waits for a clean exit.
func (c *child) stop() {
	c.t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		if !c.cmd.ProcessState.Success() {
			c.t.Errorf("syncer exited with %v; log:\n%s", c.cmd.ProcessState, tail(c.log.String(), 20))
		}
	case <-time.After(15 * time.Second):
		c.t.Fatalf("syncer did not stop on SIGTERM")
	}
}

func (c *child) kill() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// metric sums the samples of one metric family from /metrics.
func (c *child) metric(name string) float64 {
	c.t.Helper()
	resp, err := http.Get("http://" + c.metrics + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// rss is the child's resident set in bytes.
func (c *child) rss() float64 {
	c.t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	c.t.Fatal("no VmRSS")
	return 0
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tree lists the keys tree: relative path → content. The syncer runs meanwhile, so a file
// it removes between the listing and the read is simply not in the snapshot; any other
// error (the tree itself missing included) fails the test.
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil && p != dir && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func appMain(t testing.TB, args []string, out *strings.Builder) int {
	t.Helper()
	return app.Main(t.Context(), args, out)
}

func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.Addr().String())
		defer l.Close()
	}
	return out
}
