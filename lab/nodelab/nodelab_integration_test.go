package nodelab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/keysync-dev/keysync/lab"
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

type testManifest struct {
	Variants []struct {
		Name      string   `json:"name"`
		Reference string   `json:"reference"`
		Encrypted bool     `json:"encrypted"`
		KeyFiles  []string `json:"keyFiles"`
		Marker    string   `json:"marker"`
	} `json:"variants"`
}

// TestIntegrationNodeLab brings the node lab up as root, pulls a plain image and an encrypted
// fixture through CRI-O's CRI socket without and with the key in keys/synced, checks that a
// second up reuses the lab, and tears it down.
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
		"./cmd/keysync", "./cmd/mockkp", "./cmd/keysync-syncer", "./cmd/keysync-runtime-wrapper")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("failed to build the lab's binaries: %v\n%s", err, out)
	}

	var status bytes.Buffer
	opts := Options{
		WorkDir: filepath.Join(work, "lab"), EnvFile: filepath.Join(work, "lab.env"), BinDir: bin,
		CRIOBinDir: crioBin, K8sBinDir: k8sBin, Self: filepath.Join(bin, "keysync"), Out: &status,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			_ = Down(context.Background(), opts)
		}
		if !t.Failed() {
			os.RemoveAll(work)
		} else {
			t.Logf("work dir kept for inspection: %s", work)
		}
	})

	start := time.Now()
	env, err := Up(ctx, opts)
	cold := time.Since(start)
	t.Logf("cold up %.1fs:\n%s", cold.Seconds(), status.String())
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	if env.Lab != lab.KindNode || env.CRIEndpoint != filepath.Join(opts.WorkDir, "run", "crio.sock") ||
		env.KeysRoot != filepath.Join(opts.WorkDir, "keys") || env.SyncSubdir != SyncSubdir || len(env.Nodes) != 1 {
		t.Fatalf("unexpected env: %+v", env)
	}
	for _, step := range []string{"Starting the registry", "Starting CRI-O", "Starting etcd and kube-apiserver",
		"Starting the synchronizer", "Pushing the fixtures", "Writing the env file"} {
		if !strings.Contains(status.String(), "✓ "+step) {
			t.Errorf("status lacks a ✓ line for %q", step)
		}
	}

	data, err := os.ReadFile(env.FixturesManifest)
	if err != nil {
		t.Fatal(err)
	}
	var m testManifest
	if err := json.Unmarshal(data, &m); err != nil {
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
		t.Fatalf("fixtures manifest lacks a plain variant or a one-key encrypted variant: %s", data)
	}

	conn, err := dialCRI(env.CRIEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	images := runtimeapi.NewImageServiceClient(conn)
	pull := func(ref string) error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		_, err := images.PullImage(pctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		return err
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

	// A second up finds the lab up.
	status.Reset()
	start = time.Now()
	if _, err := Up(ctx, opts); err != nil {
		t.Fatalf("second up: %v", err)
	}
	t.Logf("warm up %.2fs: %s", time.Since(start).Seconds(), status.String())
	if !strings.Contains(status.String(), "reused") {
		t.Fatalf("second up did not reuse the lab:\n%s", status.String())
	}
	var st bytes.Buffer
	if err := Status(ctx, opts, &st); err != nil {
		t.Fatalf("status: %v\n%s", err, st.String())
	}

	// The supervisor crashes: its children (registry, etcd, kube-apiserver) die with it; the
	// next up restarts them and reuses CRI-O and mockkp, whose configuration did not change.
	l := Layout{Dir: opts.WorkDir}
	kill := func(name string) {
		t.Helper()
		pid, ok := (&lab.Process{PidFile: l.PidFile(name)}).Running()
		if !ok {
			t.Fatalf("%s is not running", name)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	crioPid, _ := (&lab.Process{PidFile: l.PidFile("crio")}).Running()
	kill(supervisorName)
	time.Sleep(500 * time.Millisecond)
	status.Reset()
	start = time.Now()
	if _, err := Up(ctx, opts); err != nil {
		t.Fatalf("up after a supervisor crash: %v\n%s", err, status.String())
	}
	t.Logf("up after a supervisor crash %.2fs:\n%s", time.Since(start).Seconds(), status.String())
	if !strings.Contains(status.String(), fmt.Sprintf("✓ Starting CRI-O (reused pid %d", crioPid)) {
		t.Errorf("CRI-O pid %d was not reused:\n%s", crioPid, status.String())
	}
	if err := pull(plainRef); err != nil {
		t.Fatalf("pull after the supervisor restart: %v", err)
	}

	// Supervisor and CRI-O both crash, leaving containers, conmon and mounts behind: down
	// still cleans up everything.
	kill(supervisorName)
	kill("crio")
	time.Sleep(500 * time.Millisecond)
	status.Reset()
	if err := Down(ctx, opts); err != nil {
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
	for _, name := range append(procNames(), supervisorName) {
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
	if err := Status(ctx, opts, &st); err == nil {
		t.Error("status after down reports the lab up")
	}
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
