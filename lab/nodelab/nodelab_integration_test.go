package nodelab

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/keysync-dev/keysync/fixtures/manifest"
	"github.com/keysync-dev/keysync/internal/registryauth"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/labconfig"
)

// repoRoot finds the checkout (the directory holding go.mod) from the test's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("failed to find the checkout's go.mod")
		}
		dir = parent
	}
}

// binDir returns the directory named by env, else the last line printed by the build script
// (which reuses a cached build instantly; `make test` builds it first).
func binDir(t *testing.T, root, env string, script ...string) string {
	t.Helper()
	if d := os.Getenv(env); d != "" {
		return d
	}
	cmd := exec.Command(filepath.Join(root, script[0]), script[1:]...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s failed (set %s to skip the build): %v\n%s", script[0], env, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// startSteps are Up's steps that start a component, by component name.
var startSteps = map[string]string{"registry": "Starting the registry", "mockkp": "Starting mockkp", "crio": "Starting CRI-O",
	"etcd": "Starting etcd", "kms-plugin": "Starting the KMS plug-in", "kube-apiserver": "Starting kube-apiserver",
	"syncer": "Starting the synchronizer"}

// stepNote returns the note of step's ✓ line in Up's output ("" when the line is missing).
func stepNote(out, step string) (string, bool) {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(line, "✓ "+step+" (")
		if ok {
			note, _, _ := strings.Cut(rest, ") ")
			return note, true
		}
	}
	return "", false
}

// TestIntegrationNodeLab brings the node lab up as root in a temp dir on free ports, pulls a
// plain image and an encrypted fixture through CRI-O's CRI socket without and with the key in
// keys/synced, runs containers, checks that a second up reuses every process, that status
// names a killed synchronizer and up restarts only it, and tears the lab down after CRI-O
// crashed with containers running.
func TestIntegrationNodeLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the node lab integration test needs root (CRI-O); run it as root, as CI does")
	}
	root := repoRoot(t)
	k8sBin := binDir(t, root, "KEYSYNC_K8S_BIN", "hack/build-k8s.sh", "kube-apiserver")
	crioBin := binDir(t, root, "KEYSYNC_CRIO_BIN", "hack/build-crio.sh")

	// Short work dir: CRI-O's sockets live under it.
	work, err := os.MkdirTemp("", "ksnl-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(work, "bin")
	build := exec.Command("go", "build", "-trimpath", "-tags", "containers_image_openpgp", "-o", bin+"/",
		"./cmd/mockkp", "./cmd/keysync-syncer", "./cmd/keysync-runtime-wrapper", "./cmd/keysync-kms-plugin")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("failed to build the lab's binaries: %v\n%s", err, out)
	}

	var status bytes.Buffer
	opts := Options{
		WorkDir: filepath.Join(work, "lab"), EnvFile: filepath.Join(work, "lab.env"), BinDir: bin,
		CRIOBinDir: crioBin, K8sBinDir: k8sBin, SourceDir: root,
	}
	nl, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			_ = nl.Down(context.Background(), io.Discard)
		}
		if !t.Failed() {
			os.RemoveAll(work)
		} else {
			t.Logf("work dir kept for inspection: %s", work)
		}
	})

	start := time.Now()
	env, err := nl.Up(ctx, &status)
	cold := time.Since(start)
	t.Logf("cold up %.1fs:\n%s", cold.Seconds(), status.String())
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	if env.Lab != lab.KindNode || env.CRIEndpoint != filepath.Join(opts.WorkDir, "run", "crio.sock") ||
		env.KeysRoot != filepath.Join(opts.WorkDir, "keys") || env.SyncSubdir != SyncSubdir || len(env.Nodes) != 1 ||
		env.NodeAccess != lab.AccessHost || !env.Has(lab.CapIsolated) || !env.Has(lab.CapMockKP) || !env.Has(lab.CapRunImage) ||
		!env.Has(lab.CapKMS) || !env.Has(lab.CapEtcd) || len(env.EtcdEndpoints) != 1 || env.KMSRootKeyID != KPKMSRootKeyID {
		t.Fatalf("unexpected env: %+v", env)
	}
	for _, step := range []string{"Starting the registry", "Starting CRI-O", "Starting etcd", "Starting the KMS plug-in", "Starting kube-apiserver",
		"Encrypting existing Secrets", "Starting the synchronizer", "Pushing the fixtures", "Writing the env file"} {
		if _, ok := stepNote(status.String(), step); !ok {
			t.Errorf("status lacks a ✓ line for %q", step)
		}
	}
	requireReady := func(when string) {
		t.Helper()
		st, err := nl.Status(ctx)
		if err != nil {
			t.Fatalf("status %s: %v", when, err)
		}
		if !st.Ready() {
			var b bytes.Buffer
			_ = st.Write(&b)
			t.Fatalf("lab not ready %s:\n%s", when, b.String())
		}
	}
	requireReady("after the cold up")
	kube := kubeClient(t, env.Kubeconfig)
	etcdURL := env.EtcdEndpoints[0]

	// Secrets are encrypted at rest by the KMS plug-in: the raw etcd value starts with
	// k8s:enc:kms:v2:<provider>: and holds none of the Secret's bytes; the API reads it back.
	t.Run("a Secret's raw etcd value is KMS v2 ciphertext", func(t *testing.T) {
		marker := "keysync-at-rest-marker-0123456789"
		if _, err := kube.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "at-rest"},
			Data: map[string][]byte{"k": []byte(marker)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		raw := etcdGet(t, etcdURL, "/registry/secrets/default/at-rest")
		t.Logf("raw etcd value prefix: %q", raw[:min(len(raw), len(encPrefix)+12)])
		if !bytes.HasPrefix(raw, []byte(encPrefix)) || bytes.Contains(raw, []byte(marker)) {
			t.Fatalf("raw value (%d bytes) does not start with %q or holds the Secret's data", len(raw), encPrefix)
		}
		got, err := kube.CoreV1().Secrets("default").Get(ctx, "at-rest", metav1.GetOptions{})
		if err != nil || string(got.Data["k"]) != marker {
			t.Fatalf("read back through the API: %v", err)
		}
		if err := lab.CheckHTTP(ctx, http.DefaultClient, env.KMSHealthURL); err != nil {
			t.Errorf("KMS plug-in readiness: %v", err)
		}
	})

	m, err := manifest.Load(env.FixturesManifest)
	if err != nil {
		t.Fatal(err)
	}
	var plainRef, plainMarker, encRef, keyFile string
	for _, v := range m.Variants {
		switch {
		case !v.Encrypted && plainRef == "":
			plainRef, plainMarker = v.Reference, v.Marker
		case v.Encrypted && encRef == "" && len(v.KeyFiles) == 1:
			encRef, keyFile = v.Reference, v.KeyFiles[0]
		}
	}
	if plainRef == "" || encRef == "" {
		t.Fatalf("fixtures manifest lacks a plain variant or a one-key encrypted variant: %+v", m.Variants)
	}

	conn, err := dialCRI(env.CRIEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	images := runtimeapi.NewImageServiceClient(conn)
	// The lab registry requires credentials: every pull sends them, as the kubelet does from
	// a pull Secret.
	if !env.Has(lab.CapRegistryAuth) || env.RegistryAuthFile == "" {
		t.Fatalf("env lacks capability registry-auth or REGISTRY_AUTH_FILE: %+v", env)
	}
	authFile, err := registryauth.Load(env.RegistryAuthFile)
	if err != nil {
		t.Fatal(err)
	}
	pullAs := func(ref string, auth *runtimeapi.AuthConfig) error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		_, err := images.PullImage(pctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Auth: auth})
		return err
	}
	pull := func(ref string) error {
		c, ok := authFile.For(ref)
		if !ok {
			return fmt.Errorf("no credentials for %s in the lab's auth file", ref)
		}
		return pullAs(ref, &runtimeapi.AuthConfig{Username: c.Username, Password: c.Password})
	}
	if err := pullAs(plainRef, nil); err == nil || !strings.Contains(err.Error(), "authentication required") {
		t.Fatalf("pull without credentials: %v, want the registry's authentication error", err)
	}
	synced := filepath.Join(env.KeysRoot, env.SyncSubdir, "lab-test-key.pem")

	tests := []struct {
		name    string
		withKey bool
		ref     string
		wantErr string
	}{
		{name: "plain image without keys", ref: plainRef},
		{name: "encrypted image without its key", ref: encRef, wantErr: "missing private key needed for decryption"},
		{name: "encrypted image with its key in keys/synced", withKey: true, ref: encRef},
		{name: "plain image with a key present", withKey: true, ref: plainRef},
		{name: "encrypted image after the key is removed", ref: encRef, wantErr: "missing private key needed for decryption"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.withKey {
				key, err := os.ReadFile(keyFile)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(synced, key, 0o600); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Remove(synced); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			err := pull(tt.ref)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("pull %s: %v", tt.ref, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("pull %s: err = %v, want %q", tt.ref, err, tt.wantErr)
			}
		})
	}

	// Containers run, with and without an infra container (the pause image from the lab
	// registry, oom_score_adj -998 clamped by the runtime wrapper on this kind of host).
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	for i, infra := range []bool{false, true} {
		t.Run(fmt.Sprintf("run a container, infra container %v", infra), func(t *testing.T) {
			pid := runtimeapi.NamespaceMode_CONTAINER
			if infra {
				pid = runtimeapi.NamespaceMode_POD
			}
			ns := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: pid}
			logDir := filepath.Join(opts.WorkDir, "crio", "pod-logs", fmt.Sprintf("t%d", i))
			podCfg := &runtimeapi.PodSandboxConfig{
				Metadata:     &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("t%d", i), Namespace: "default", Uid: fmt.Sprintf("uid-%d", i)},
				LogDirectory: logDir,
				Linux:        &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}},
			}
			pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
			if err != nil {
				t.Fatalf("run pod sandbox: %v", err)
			}
			ctr, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.GetPodSandboxId(), SandboxConfig: podCfg,
				Config: &runtimeapi.ContainerConfig{
					Metadata: &runtimeapi.ContainerMetadata{Name: "marker"},
					Image:    &runtimeapi.ImageSpec{Image: plainRef, UserSpecifiedImage: plainRef},
					LogPath:  "marker.log",
					Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns}},
				}})
			if err != nil {
				t.Fatalf("create container: %v", err)
			}
			if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.GetContainerId()}); err != nil {
				t.Fatalf("start container: %v", err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				log, _ := os.ReadFile(filepath.Join(logDir, "marker.log"))
				if strings.Contains(string(log), plainMarker) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("container log lacks the marker %q: %q", plainMarker, log)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}

	// A second up finds every process up and reuses it.
	status.Reset()
	start = time.Now()
	if _, err := nl.Up(ctx, &status); err != nil {
		t.Fatalf("second up: %v", err)
	}
	t.Logf("warm up %.2fs:\n%s", time.Since(start).Seconds(), status.String())
	for _, step := range append(sortedSteps(), "Pushing the fixtures", "Encrypting existing Secrets") {
		if note, _ := stepNote(status.String(), step); !strings.HasPrefix(note, "reused") {
			t.Errorf("second up did not reuse %q (note %q)", step, note)
		}
	}

	// The synchronizer dies: status is not ready and names it; up restarts it and only it.
	l := Layout{Dir: opts.WorkDir}
	kill := func(name string) {
		t.Helper()
		p := &lab.Process{PidFile: l.PidFile(name)}
		pid, ok := p.Running()
		if !ok {
			t.Fatalf("%s is not running", name)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, ok := p.Running(); !ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s (pid %d) still running 10s after SIGKILL", name, pid)
			}
		}
	}
	// A Secret stored in the clear (as before encryption was enabled: JSON, identity) still
	// reads, and is encrypted by the next up once the lab no longer remembers the rewrite.
	legacy := fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"legacy","namespace":"default","uid":"0b7c6f0e-1d2a-4c3b-9e8f-7a6b5c4d3e2f","creationTimestamp":"2025-01-01T00:00:00Z"},"data":{"k":%q}}`,
		base64.StdEncoding.EncodeToString([]byte("legacy-plaintext")))
	etcdPut(t, etcdURL, "/registry/secrets/default/legacy", []byte(legacy))
	if s, err := kube.CoreV1().Secrets("default").Get(ctx, "legacy", metav1.GetOptions{}); err != nil || string(s.Data["k"]) != "legacy-plaintext" {
		t.Fatalf("a Secret stored in the clear does not read through the identity provider: %v", err)
	}
	forgetSecretsRewrite(t, opts.WorkDir)

	kill("syncer")
	st, err := nl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var stOut bytes.Buffer
	_ = st.Write(&stOut)
	if st.Ready() {
		t.Fatalf("status is ready with the synchronizer killed:\n%s", stOut.String())
	}
	for _, c := range st.Components {
		if c.Up == (c.Name == "syncer") {
			t.Errorf("after killing the synchronizer: %s up=%v (%s)", c.Name, c.Up, c.Detail)
		}
	}
	if !strings.Contains(stOut.String(), "✗ syncer") || !strings.Contains(stOut.String(), "(1 of 7 components down)") {
		t.Errorf("status does not name the synchronizer:\n%s", stOut.String())
	}
	status.Reset()
	start = time.Now()
	if _, err := nl.Up(ctx, &status); err != nil {
		t.Fatalf("up after the synchronizer died: %v\n%s", err, status.String())
	}
	t.Logf("up after the synchronizer died %.2fs:\n%s", time.Since(start).Seconds(), status.String())
	for name, step := range startSteps {
		note, ok := stepNote(status.String(), step)
		if restarted := ok && !strings.HasPrefix(note, "reused"); restarted != (name == "syncer") {
			t.Errorf("%s restarted=%v (note %q), want only the synchronizer restarted", step, restarted, note)
		}
	}
	requireReady("after up restarted the synchronizer")
	if note, _ := stepNote(status.String(), "Encrypting existing Secrets"); !strings.HasSuffix(note, "Secrets rewritten") {
		t.Errorf("up did not rewrite the Secrets after the state forgot it (note %q)", note)
	}
	if raw := etcdGet(t, etcdURL, "/registry/secrets/default/legacy"); !bytes.HasPrefix(raw, []byte(encPrefix)) {
		t.Errorf("the Secret stored in the clear was not encrypted by the rewrite: %q", raw[:min(len(raw), 40)])
	}
	if err := pull(plainRef); err != nil {
		t.Fatalf("pull after the synchronizer restart: %v", err)
	}

	// CRI-O crashes, leaving containers, conmon and mounts behind: down still cleans up
	// everything.
	kill("crio")
	status.Reset()
	if err := nl.Down(ctx, &status); err != nil {
		t.Fatalf("down: %v\n%s", err, status.String())
	}
	downDone = true
	t.Logf("down:\n%s", status.String())
	// Three: the marker containers of both pods and the infra container of the second.
	if !strings.Contains(status.String(), "✓ Killing leftover containers (3 containers)") {
		t.Errorf("down did not kill the leftover containers:\n%s", status.String())
	}
	if pids := processesUnder(t, opts.WorkDir); len(pids) > 0 {
		t.Errorf("processes referring to the work dir left after down: %v", pids)
	}
	for name := range startSteps {
		p := &lab.Process{PidFile: l.PidFile(name)}
		if pid, ok := p.Running(); ok {
			t.Errorf("%s still running as pid %d after down", name, pid)
		}
		if _, err := os.Stat(l.PidFile(name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pid file of %s left after down", name)
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if mounts, _ := mountsUnder(f, opts.WorkDir); len(mounts) > 0 {
		t.Errorf("mounts left under the work dir: %q", mounts)
	}
	if st, err := nl.Status(ctx); err != nil || st.Ready() {
		t.Errorf("status after down: ready=%v err=%v", st.Ready(), err)
	}
	if _, err := os.Stat(opts.EnvFile); !os.IsNotExist(err) {
		t.Errorf("env file kept after down: %v", err)
	}
}

// sortedSteps are the start steps in component order.
func sortedSteps() []string {
	var steps []string
	for _, c := range components() {
		steps = append(steps, startSteps[c.name])
	}
	return steps
}

// processesUnder lists the processes whose command line names dir (conmon, containers' runc
// state, the lab's own processes).
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if strings.Contains(string(stat), ") Z ") {
			continue
		}
		found = append(found, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return found
}

// encPrefix starts every Secret the lab's KMS plug-in encrypted.
const encPrefix = "k8s:enc:kms:v2:" + labconfig.KMSProviderName + ":"

func kubeClient(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// etcdCall posts to etcd's v3 JSON gateway (keys and values in base64).
func etcdCall(t *testing.T, endpoint, path string, body map[string]string, out any) {
	t.Helper()
	data, _ := json.Marshal(body)
	resp, err := http.Post(endpoint+path, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatalf("etcd %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("etcd %s: HTTP %d: %s", path, resp.StatusCode, msg)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("etcd %s: %v", path, err)
	}
}

// etcdGet reads key's raw value through etcd's gateway (/v3/kv/range).
func etcdGet(t *testing.T, endpoint, key string) []byte {
	t.Helper()
	var out struct {
		KVs []struct {
			Value string `json:"value"`
		} `json:"kvs"`
	}
	etcdCall(t, endpoint, "/v3/kv/range", map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(key))}, &out)
	if len(out.KVs) != 1 {
		t.Fatalf("etcd has %d values at %s", len(out.KVs), key)
	}
	v, err := base64.StdEncoding.DecodeString(out.KVs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// etcdPut writes key's raw value through etcd's gateway (/v3/kv/put).
func etcdPut(t *testing.T, endpoint, key string, value []byte) {
	t.Helper()
	var out map[string]any
	etcdCall(t, endpoint, "/v3/kv/put", map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(key)),
		"value": base64.StdEncoding.EncodeToString(value)}, &out)
}

// forgetSecretsRewrite drops the state's record of the Secrets' rewrite, as for a lab whose
// encryption was just enabled.
func forgetSecretsRewrite(t *testing.T, work string) {
	t.Helper()
	l := Layout{Dir: work}
	data, err := os.ReadFile(l.StateFile())
	if err != nil {
		t.Fatal(err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	st.SecretsEncryptedFor = ""
	data, _ = json.Marshal(st)
	if err := os.WriteFile(l.StateFile(), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
