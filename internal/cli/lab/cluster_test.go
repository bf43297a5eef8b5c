package lab

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/fixtures"
	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/internal/registry"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
)

// TestClusterLab runs `keysync lab up|status|down --kind cluster` against a real kube-apiserver and registry. The
// agent image holds the marker program (static, like keysync-node-agent from make build).
func TestClusterLab(t *testing.T) {
	ctx := context.Background()
	srv := kubetest.StartT(t)
	cs, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Start(ctx, registry.Options{})
	if err != nil {
		t.Fatalf("registry.Start: %v (run `make deps`)", err)
	}
	t.Cleanup(func() { _ = reg.Stop() })
	marker, err := fixtures.BuildMarker(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	markerPath := filepath.Join(dir, "marker")
	if err := os.WriteFile(markerPath, marker, 0o755); err != nil {
		t.Fatal(err)
	}
	base := []string{"lab", "up", "--kind", "cluster", "--kubeconfig", srv.KubeconfigPath, "--tls-verify=false", "--marker", markerPath, "--agent-binary", markerPath}

	steps := []struct {
		name    string
		prepare func(t *testing.T)
		args    []string
		wantErr string
	}{
		{name: "no registry", args: base, wantErr: "--registry is required"},
		{name: "no synchronizer namespace", args: append(base, "--registry", reg.Addr()), wantErr: "deploy the synchronizer under test first"},
		{name: "no nodes", prepare: func(t *testing.T) {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "image-key-synchronizer"}}
			if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}, args: append(base, "--registry", reg.Addr()), wantErr: "the cluster has no nodes"},
		{name: "a node without CRI-O", prepare: func(t *testing.T) {
			node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-c"}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			node.Status.NodeInfo = corev1.NodeSystemInfo{ContainerRuntimeVersion: "containerd://2.0.0", Architecture: "amd64"}
			if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}, args: append(base, "--registry", reg.Addr()), wantErr: "node-c (containerd://2.0.0, amd64)"},
		{name: "bad mockkp-from", args: append(base, "--registry", reg.Addr(), "--mockkp-from", filepath.Join(dir, "absent.env")), wantErr: "--mockkp-from"},
		{name: "ready", prepare: func(t *testing.T) {
			if err := cs.CoreV1().Nodes().Delete(ctx, "node-c", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"node-b", "node-a"} {
				node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				node.Status.NodeInfo = corev1.NodeSystemInfo{ContainerRuntimeVersion: "cri-o://1.34.0", Architecture: "amd64"}
				if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}, args: append(base, "--registry", reg.Addr(), "--lab-env", filepath.Join(dir, "cluster.env"), "--out", filepath.Join(dir, "out"))},
		{name: "mockkp from another lab, with its public names", prepare: func(t *testing.T) {
			from := lab.Env{Lab: lab.KindKind, Kubeconfig: srv.KubeconfigPath, Nodes: []string{"kind-worker"}, Capabilities: []lab.Capability{lab.CapMockKP, lab.CapKPPublicNames},
				MockKPURL: "http://127.0.0.1:5080", MockKPAdminURL: "http://127.0.0.1:5081", KPInstanceID: "inst", KPAPIKey: "key", KPRootKeyID: "root",
				KPPublicURL: "https://kms.example.test", KPCAFile: filepath.Join(dir, "ca.crt")}
			if err := lab.WriteEnv(filepath.Join(dir, "kind.env"), from); err != nil {
				t.Fatal(err)
			}
		}, args: append(base, "--registry", reg.Addr(), "--mockkp-from", filepath.Join(dir, "kind.env"),
			"--lab-env", filepath.Join(dir, "mockkp.env"), "--out", filepath.Join(dir, "mockkp-out"))},
		{name: "dynamically linked agent binary", args: append(base, "--registry", reg.Addr(), "--agent-binary", "/bin/ls",
			"--lab-env", filepath.Join(dir, "other.env"), "--out", filepath.Join(dir, "other")), wantErr: "dynamically linked"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.prepare != nil {
				st.prepare(t)
			}
			code, out, errOut := run(t, st.args...)
			if st.wantErr != "" {
				if code == 0 || !strings.Contains(errOut, st.wantErr) {
					t.Fatalf("exit %d, stderr %q; want failure with %q", code, errOut, st.wantErr)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
			}
		})
	}

	env, err := lab.LoadEnv(filepath.Join(dir, "cluster.env"))
	if err != nil {
		t.Fatal(err)
	}
	if env.Lab != lab.KindCluster || strings.Join(env.Nodes, ",") != "node-a,node-b" || env.Registry != reg.Addr() ||
		env.KeysRoot != cluster.DefaultKeysRoot || env.CRIEndpoint != cluster.DefaultCRISocket || env.SyncSubdir != "synced" {
		t.Errorf("env file: %+v", env)
	}
	if env.Access() != lab.AccessPod || !env.Has(lab.CapCluster) || !env.Has(lab.CapRunImage) || env.Has(lab.CapMockKP) || env.Has(lab.CapIsolated) {
		t.Errorf("env file: node access %q, capabilities %v; want pod and cluster,run-image only", env.Access(), env.Capabilities)
	}
	withKP, err := lab.LoadEnv(filepath.Join(dir, "mockkp.env"))
	if err != nil {
		t.Fatal(err)
	}
	if !withKP.Has(lab.CapMockKP) || !withKP.Has(lab.CapKPPublicNames) || withKP.KPPublicURL != "https://kms.example.test" ||
		withKP.KPCAFile != filepath.Join(dir, "ca.crt") || withKP.KPInstanceID != "inst" {
		t.Errorf("--mockkp-from did not carry mockkp and its public names: %v %q %q", withKP.Capabilities, withKP.KPPublicURL, withKP.KPCAFile)
	}
	if _, err := os.Stat(env.FixturesManifest); err != nil {
		t.Errorf("fixtures manifest: %v", err)
	}
	// The agent image is in the registry under the reference the env file names.
	repo, tag, ok := strings.Cut(strings.TrimPrefix(env.NodeAgentImage, reg.Addr()+"/"), ":")
	if !ok || repo != cluster.AgentRepo {
		t.Fatalf("NODE_AGENT_IMAGE = %q", env.NodeAgentImage)
	}
	req, _ := http.NewRequest(http.MethodHead, reg.URL()+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("agent image %s: registry answers %s", env.NodeAgentImage, resp.Status)
	}
}

// TestClusterLabStatusAndDown checks status (not ready without the synchronizer's DaemonSet,
// exit 1) and down (removes only what up wrote) against a real kube-apiserver.
func TestClusterLabStatusAndDown(t *testing.T) {
	srv := kubetest.StartT(t)
	dir := t.TempDir()
	envPath := filepath.Join(dir, "cluster.env")
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := lab.WriteEnv(envPath, lab.Env{Lab: lab.KindCluster, Kubeconfig: srv.KubeconfigPath, Nodes: []string{"n"}, NodeAgentImage: "r/a:1"}); err != nil {
		t.Fatal(err)
	}
	args := func(verb string) []string {
		return []string{"lab", verb, "--kind", "cluster", "--kubeconfig", srv.KubeconfigPath, "--registry", "127.0.0.1:1",
			"--tls-verify=false", "--lab-env", envPath, "--out", out}
	}
	code, stdout, stderr := run(t, args("status")...)
	if code != 1 || !strings.Contains(stdout, "✗ cluster") || !strings.Contains(stdout, "✗ registry") ||
		!strings.Contains(stdout, "✓ env file") || !strings.Contains(stdout, "cluster lab: NOT ready (3 of 4 components down)") {
		t.Errorf("status: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if code, _, stderr := run(t, args("down")...); code != 0 || !strings.Contains(stderr, "✓ Removing the lab env file (removed)") {
		t.Errorf("down: exit %d, stderr:\n%s", code, stderr)
	}
	for _, p := range []string{envPath, out} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after down (%v)", p, err)
		}
	}
}
