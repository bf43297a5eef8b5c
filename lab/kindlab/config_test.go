package kindlab

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

func TestClusterConfig(t *testing.T) {
	tests := []struct {
		name        string
		image       string
		workers     int
		wantErr     string
		wantWorkers int
	}{
		{name: "default one worker", image: "keysync/kind-node:v1", workers: 1, wantWorkers: 1},
		{name: "control plane only", image: "keysync/kind-node:v1", workers: 0, wantWorkers: 0},
		{name: "three workers", image: "keysync/kind-node:v1", workers: 3, wantWorkers: 3},
		{name: "negative workers", image: "keysync/kind-node:v1", workers: -1, wantErr: "invalid worker count"},
		{name: "no image", workers: 1, wantErr: "missing node image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ClusterConfig("lab", tt.image, tt.workers)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Name != "lab" || !cfg.Networking.DisableDefaultCNI {
				t.Errorf("name %q, disableDefaultCNI %v", cfg.Name, cfg.Networking.DisableDefaultCNI)
			}
			var cp, workers int
			for _, n := range cfg.Nodes {
				if n.Image != tt.image {
					t.Errorf("node image %q, want %q", n.Image, tt.image)
				}
				switch n.Role {
				case v1alpha4.ControlPlaneRole:
					cp++
				case v1alpha4.WorkerRole:
					workers++
				}
			}
			if cp != 1 || workers != tt.wantWorkers {
				t.Errorf("control planes %d workers %d, want 1 and %d", cp, workers, tt.wantWorkers)
			}
		})
	}
}

// TestKubeadmPatches checks each patch names its kind and points the runtime at CRI-O's socket.
func TestKubeadmPatches(t *testing.T) {
	cfg, err := ClusterConfig("lab", "img", 1)
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]map[string]any{}
	for _, p := range cfg.KubeadmConfigPatches {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(p), &m); err != nil {
			t.Fatalf("patch does not parse: %v\n%s", err, p)
		}
		byKind[m["kind"].(string)] = m
	}
	tests := []struct {
		kind string
		path []string
		want string
	}{
		{"InitConfiguration", []string{"nodeRegistration", "criSocket"}, CRISocket},
		{"JoinConfiguration", []string{"nodeRegistration", "criSocket"}, CRISocket},
		{"KubeletConfiguration", []string{"containerRuntimeEndpoint"}, CRISocket},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			var v any = byKind[tt.kind]
			for _, k := range tt.path {
				m, ok := v.(map[string]any)
				if !ok {
					t.Fatalf("%s: no %v", tt.kind, tt.path)
				}
				v = m[k]
			}
			if v != tt.want {
				t.Errorf("%s %v = %v, want %q", tt.kind, tt.path, v, tt.want)
			}
		})
	}
	phases, _ := byKind["InitConfiguration"]["skipPhases"].([]any)
	var got []string
	for _, p := range phases {
		got = append(got, p.(string))
	}
	// kind's own default (preflight) must survive the merge patch, and CoreDNS is skipped.
	if strings.Join(got, ",") != "preflight,addon/coredns" {
		t.Errorf("skipPhases = %v, want [preflight addon/coredns]", got)
	}
}

func TestRouteCommands(t *testing.T) {
	nets := parseNodeNets("a 10.244.0.0/24 172.18.0.2\nb 10.244.1.0/24 172.18.0.3\nbad line\nc 10.244.2.0/24 172.18.0.4\n")
	if len(nets) != 3 {
		t.Fatalf("parsed %v, want 3 nodes", nets)
	}
	cmds := routeCommands(nets)
	tests := []struct {
		node string
		want []string
	}{
		{"a", []string{"ip route replace 10.244.1.0/24 via 172.18.0.3", "ip route replace 10.244.2.0/24 via 172.18.0.4"}},
		{"b", []string{"ip route replace 10.244.0.0/24 via 172.18.0.2", "ip route replace 10.244.2.0/24 via 172.18.0.4"}},
		{"c", []string{"ip route replace 10.244.0.0/24 via 172.18.0.2", "ip route replace 10.244.1.0/24 via 172.18.0.3"}},
	}
	for _, tt := range tests {
		var got []string
		for _, c := range cmds[tt.node] {
			got = append(got, strings.Join(c, " "))
		}
		if strings.Join(got, ";") != strings.Join(tt.want, ";") {
			t.Errorf("node %s: %q, want %q", tt.node, got, tt.want)
		}
	}
}

// TestWorkerRunArgs checks that an added node carries what kind needs to treat it as its own.
func TestWorkerRunArgs(t *testing.T) {
	args := strings.Join(workerRunArgs("lab", "lab-worker3", "img:1"), " ")
	for _, want := range []string{
		"--label io.x-k8s.kind.cluster=lab", "--label io.x-k8s.kind.role=worker", "--net kind",
		"--hostname lab-worker3", "--name lab-worker3", "--privileged", "--volume /var",
		"--cgroupns=private", "--tmpfs /run",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("run args %q lack %q", args, want)
		}
	}
	if !strings.HasSuffix(args, " img:1") {
		t.Errorf("run args %q do not end with the image", args)
	}
}

func TestRemoveKindEnv(t *testing.T) {
	tests := []struct {
		name     string
		content  string // "" = no file
		wantGone bool
		wantNote string
	}{
		{name: "kind lab", content: "KEYSYNC_LAB=kind\nKUBECONFIG=/k\n", wantGone: true, wantNote: "removed"},
		{name: "node lab kept", content: "KEYSYNC_LAB=node\n", wantNote: "kept: not this lab's"},
		{name: "cluster lab kept", content: "KEYSYNC_LAB=cluster\n", wantNote: "kept: not this lab's"},
		{name: "garbage kept", content: "not an env file\n", wantNote: "kept: not this lab's"},
		{name: "absent", wantGone: true, wantNote: "absent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lab.env")
			if tt.content != "" {
				if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			note, err := removeKindEnv(path)
			if err != nil {
				t.Fatal(err)
			}
			if note != tt.wantNote {
				t.Errorf("note %q, want %q", note, tt.wantNote)
			}
			_, statErr := os.Stat(path)
			if gone := errors.Is(statErr, os.ErrNotExist); gone != tt.wantGone {
				t.Errorf("file gone = %v, want %v", gone, tt.wantGone)
			}
		})
	}
}

func TestParseDaemonSetReady(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, out, want, wantErr string
	}{
		{name: "ready", out: "addon-image-key-synchronizer 2 2\n", want: "addon-image-key-synchronizer 2/2 ready"},
		{name: "one pod missing", out: "addon-image-key-synchronizer 1 2\n", wantErr: "1 of 2 pods ready"},
		{name: "scheduled nowhere", out: "addon-image-key-synchronizer 0 0\n", wantErr: "0 of 0 pods ready"},
		{name: "no DaemonSet", out: "\n", wantErr: "no DaemonSet in namespace image-key-synchronizer"},
		{name: "garbage", out: "x y\n", wantErr: `unexpected DaemonSet status line "x y"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseDaemonSetReady(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseDaemonSetReady() = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseDaemonSetReady() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
