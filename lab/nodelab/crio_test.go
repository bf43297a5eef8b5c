package nodelab

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/keysync-dev/keysync/lab/labconfig"
)

func testCRIOConfig(dir string) crioConfig {
	return crioConfig{layout: Layout{Dir: dir}, pinns: "/c/pinns", runtimePath: "/b/keysync-runtime-wrapper",
		monitorPath: "/usr/bin/conmon", registry: "127.0.0.1:5000", pauseImage: "127.0.0.1:5000/keysync/pause:3.10.1",
		cniPluginDir: "/usr/lib/cni"}
}

func renderCRIO(t *testing.T, c crioConfig) labconfig.Files {
	t.Helper()
	f, err := labconfig.Render(c.params())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestCRIODropIn(t *testing.T) {
	c := testCRIOConfig("/w/lab")
	dropIn := renderCRIO(t, c).DropIn
	var got map[string]any
	if _, err := toml.Decode(string(dropIn), &got); err != nil {
		t.Fatalf("drop-in is not TOML: %v\n%s", err, dropIn)
	}
	lookup := func(path string) any {
		var cur any = got
		for _, k := range strings.Split(path, ".") {
			m, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = m[k]
		}
		return cur
	}
	tests := []struct {
		key  string
		want any
	}{
		{"crio.root", "/w/lab/crio/storage"},
		{"crio.runroot", "/w/lab/crio/run/storage"},
		{"crio.storage_driver", "overlay"},
		{"crio.log_dir", "/w/lab/crio/pod-logs"},
		{"crio.api.listen", "/w/lab/run/crio.sock"},
		{"crio.runtime.cgroup_manager", "cgroupfs"},
		{"crio.runtime.decryption_keys_path", "/w/lab/keys"},
		{"crio.runtime.pinns_path", "/c/pinns"},
		{"crio.runtime.default_runtime", "runc"},
		{"crio.runtime.runtimes.runc.runtime_path", "/b/keysync-runtime-wrapper"},
		{"crio.runtime.runtimes.runc.monitor_path", "/usr/bin/conmon"},
		{"crio.image.pause_image", "127.0.0.1:5000/keysync/pause:3.10.1"},
		{"crio.image.signature_policy", "/w/lab/crio/policy.json"},
		{"crio.metrics.enable_metrics", false},
		{"crio.nri.enable_nri", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if v := lookup(tt.key); v != tt.want {
				t.Fatalf("%s = %#v, want %#v", tt.key, v, tt.want)
			}
		})
	}
	// Every path CRI-O writes is under the work dir.
	for _, key := range []string{"crio.version_file", "crio.version_file_persist", "crio.clean_shutdown_file",
		"crio.runtime.container_exits_dir", "crio.runtime.container_attach_socket_dir", "crio.runtime.namespaces_dir",
		"crio.runtime.runtimes.runc.runtime_root", "crio.network.network_dir"} {
		if v, _ := lookup(key).(string); !strings.HasPrefix(v, "/w/lab/") {
			t.Errorf("%s = %q, want a path under the work dir", key, v)
		}
	}
}

func TestRegistriesConf(t *testing.T) {
	c := testCRIOConfig("/w/lab")
	var got struct {
		Unqualified []string `toml:"unqualified-search-registries"`
		ShortName   string   `toml:"short-name-mode"`
		Registry    []struct {
			Prefix, Location  string
			Insecure, Blocked bool
		}
	}
	if _, err := toml.Decode(string(renderCRIO(t, c).RegistriesConf), &got); err != nil {
		t.Fatalf("registries.conf is not TOML: %v", err)
	}
	if len(got.Unqualified) != 0 || got.ShortName != "enforcing" {
		t.Fatalf("short names may resolve: %+v", got)
	}
	blocked := map[string]bool{}
	aliases := map[string]bool{}
	for _, r := range got.Registry {
		if r.Prefix == c.registry {
			if !r.Insecure || r.Blocked {
				t.Errorf("lab registry entry %+v, want insecure and not blocked", r)
			}
			continue
		}
		if r.Prefix == "localhost:5000" {
			if r.Location != r.Prefix || !r.Insecure || r.Blocked {
				t.Errorf("lab registry name %+v, want location itself, insecure and not blocked", r)
			}
			aliases[r.Prefix] = true
			continue
		}
		if !r.Blocked {
			t.Errorf("registry %s is not blocked", r.Prefix)
		}
		blocked[r.Prefix] = true
	}
	if len(aliases) != 1 {
		t.Errorf("other names %v, want localhost:5000", aliases)
	}
	for _, want := range []string{"docker.io", "quay.io", "registry.k8s.io", "gcr.io", "ghcr.io"} {
		if !blocked[want] {
			t.Errorf("%s is not blocked", want)
		}
	}
}

func TestPolicyAndWrite(t *testing.T) {
	dir := t.TempDir()
	c := testCRIOConfig(dir)
	if _, err := c.write(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "crio", "policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pol struct {
		Default    []map[string]string
		Transports map[string]map[string][]map[string]string
	}
	if err := json.Unmarshal(data, &pol); err != nil {
		t.Fatal(err)
	}
	if pol.Default[0]["type"] != "reject" {
		t.Errorf("default policy %v, want reject", pol.Default)
	}
	if pol.Transports["docker"][c.registry][0]["type"] != "insecureAcceptAnything" {
		t.Errorf("lab registry not accepted: %s", data)
	}
	if len(pol.Transports["docker"]) != 2 {
		t.Errorf("docker transport accepts more than the lab registry and its names: %s", data)
	}
	for _, p := range []string{"crio/crio.conf", "crio/crio.conf.d/10-keysync-lab.conf", "crio/registries.conf", "keys", "crio/net.d"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("missing %s: %v", p, err)
		}
	}
	args := strings.Join(c.args(), " ")
	for _, want := range []string{"--config-dir " + filepath.Join(dir, "crio", "crio.conf.d"), "--registries-conf " + filepath.Join(dir, "crio", "registries.conf")} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
}

// TestSameConfigAsKindNodes fails if the node lab's CRI-O files differ from the kind node
// image's anywhere but the lab-specific parameters (labconfig.Compare).
func TestSameConfigAsKindNodes(t *testing.T) {
	kind, err := labconfig.Kind(labconfig.KindInput{Registry: "kind-registry:5000",
		RegistryAliases: []string{"127.0.0.1:5001", "localhost:5001"}, PauseVersion: "3.10.1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := labconfig.Compare(kind, testCRIOConfig(t.TempDir()).params()); err != nil {
		t.Fatalf("the node lab's CRI-O files differ from the kind nodes':\n%v", err)
	}
}
